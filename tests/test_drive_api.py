"""The HTTP API as a new user meets it with curl: each refusal is a sentence with its code."""

from __future__ import annotations

from pathlib import Path

from tests.liveserver import LiveServer, call


def test_removing_an_active_job_says_its_status_in_plain_words(tmp_path: Path) -> None:
    """It said "only a finished job can be removed, not a active one"."""
    live = LiveServer(tmp_path / "data", "--demo-jobs").start()
    try:
        token = live.token("rita")
        status, job = call(live, "POST", "/api/jobs", token,
                            {"type": "demo.sleep", "payload": {"seconds": 30}})  # fmt: skip
        assert status == 202
        status, body = call(live, "DELETE", f"/api/jobs/{job['jobId']}", token)
        assert status == 409 and body["error"]["code"] == "ILLEGAL_TRANSITION"
        assert body["error"]["message"] in (
            "only a finished job can be removed; this one is queued",
            "only a finished job can be removed; this one is active",
        ), body
        call(live, "POST", f"/api/jobs/{job['jobId']}/cancel", token)
    finally:
        live.stop()


def test_an_upload_to_a_type_that_takes_none_names_the_ones_that_do(tmp_path: Path) -> None:
    """It said "no job type here accepts a multipart body (pdf-notes)", which reads as if
    pdf-notes did not either."""
    live = LiveServer(tmp_path / "data", "--demo-jobs").start()
    try:
        token = live.token("rita")
        boundary = "xyzzy"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=file; filename=a.pdf\r\n"
                f"Content-Type: application/pdf\r\n\r\n%PDF-1.4\r\n--{boundary}--\r\n").encode()
        status, reply = call(live, "POST", "/api/jobs?type=demo.sleep", token, data=body,
                             headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert status == 400
        error = reply["error"]
        assert error == {"code": "INVALID_PAYLOAD", "message": "job type 'demo.sleep' does not "
                         "take a multipart body; these do: pdf-notes"}, error
    finally:
        live.stop()


def test_a_plain_get_of_the_websocket_path_says_what_it_is(tmp_path: Path) -> None:
    """`curl /ws` (or the path opened in a browser tab) answered only "Bad Request"."""
    live = LiveServer(tmp_path / "data").start()
    try:
        token = live.token("rita")
        status, body = call(live, "GET", "/ws", token)
        assert status == 400 and body["error"]["code"] == "BAD_REQUEST", body
        assert "WebSocket endpoint" in body["error"]["message"], body
        assert call(live, "GET", "/api/jobs", token)[0] == 200  # and it goes on serving
    finally:
        live.stop()


def test_a_job_without_a_type_is_told_to_send_one(tmp_path: Path) -> None:
    """An empty body (or one without "type") answered "unknown job type ''"."""
    live = LiveServer(tmp_path / "data", "--demo-jobs").start()
    try:
        token = live.token("rita")
        for body in ({}, {"payload": {"seconds": 1}}):
            status, reply = call(live, "POST", "/api/jobs", token, body)
            assert status == 400 and reply["error"]["code"] == "UNKNOWN_JOB_TYPE", reply
            assert reply["error"]["message"] == (
                'no job type: send "type"; this server runs: demo.fail, demo.sleep, pdf-notes')
    finally:
        live.stop()
