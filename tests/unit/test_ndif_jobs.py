"""A long NDIF job reports its status as progress and can be cancelled (issue 15).

No network reaches NDIF here, so the server is faked where nnsight's blocking `RemoteBackend`
meets it: the `/subscribe` websocket (`websocket.create_connection`) and the HTTP POST of the
request (`RemoteBackend._post`). Everything between — serializing the session, waiting on the
socket, reading the statuses, loading the result and handing it back — is nnsight's own code
and twinlens's `Job`, as it runs against NDIF.
"""

from __future__ import annotations

import io
import json
import threading
import time

import pytest
import torch
import websocket
from nnsight import CONFIG
from nnsight.intervention.backends.remote import RemoteBackend
from nnsight.schema.response import ResponseModel, Status
from spy import returns_of

from lib.analyses.compare import compare_prompts
from lib.core.backend import JOB_STAGES, Job
from lib.core.errors import Cancelled
from lib.core.hooks import HooksBackend
from lib.core.models import load_model
from lib.core.nnsight_backend import NnsightBackend

A, B = "The capital of France is", "The capital of Italy is"


class FakeNdif:
    """NDIF's side of one job: the session id, then each status in turn, then (if given) the
    result as a binary COMPLETED frame; with nothing left to send, the socket just times out."""

    def __init__(self, statuses: list[str], result: dict | None) -> None:
        self.frames: list = [json.dumps({"session_id": "session-1"})]
        self.frames += [ResponseModel(id="job-1", status=Status(s)).model_dump_json() for s in statuses]
        if result is not None:
            buffer = io.BytesIO()
            torch.save(result, buffer)
            completed = ResponseModel(id="job-1", status=Status.COMPLETED, data=buffer.getvalue())
            self.frames.append(completed.pickle())
        self.closed = False
        self.posted: list[bytes] = []

    def settimeout(self, seconds: float) -> None:
        pass

    def recv(self):
        if self.frames:
            return self.frames.pop(0)
        time.sleep(0.05)
        raise websocket.WebSocketTimeoutException("no update")

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def on_fake_ndif(tiny_folders, monkeypatch):
    """A tiny model whose runs go to a fake NDIF: returns (model, serve) where serve(statuses,
    result) installs the server's script for the next job."""
    monkeypatch.setenv("NDIF_API_KEY", "sk-test-key")
    monkeypatch.setattr(CONFIG.API, "COMPRESS", False)
    model = load_model(str(tiny_folders["gpt2"]), backend="nnsight", remote="local")
    envoy = model.backend.envoy
    monkeypatch.setattr(type(envoy), "to_model_key", lambda self: "fake:gpt2-tiny")
    monkeypatch.setattr(model, "backend", NnsightBackend(model, remote=True, envoy=envoy))
    servers: list[FakeNdif] = []

    def serve(statuses: list[str], result: dict | None) -> FakeNdif:
        server = FakeNdif(statuses, result)
        servers.append(server)
        return server

    def post(self, request, blob):
        servers[-1].posted.append(blob)
        return ResponseModel(id="job-1", status=Status.RECEIVED)

    monkeypatch.setattr(websocket, "create_connection", lambda *a, **k: servers[-1])
    monkeypatch.setattr(RemoteBackend, "_post", post)
    return model, serve


def _reference(hooks_model, monkeypatch) -> tuple[dict, dict]:
    """The comparison, and the value the job's session saves (what NDIF sends back), as the
    hooks backend computes them on the same model."""
    with monkeypatch.context() as patch:
        sent_back = returns_of(patch, HooksBackend, "run_each")
        comparison = compare_prompts(hooks_model, A, B, top_k=3).to_dict()
    return comparison, {"saved": sent_back[0]}


def test_a_remote_job_reports_each_status_as_progress(on_fake_ndif, tiny_models, monkeypatch):
    expected, result = _reference(tiny_models["gpt2"], monkeypatch)
    model, serve = on_fake_ndif
    server = serve(["QUEUED", "RUNNING"], result)
    heard: list[tuple[float, str]] = []

    comparison = compare_prompts(model, A, B, top_k=3, progress=lambda f, s: heard.append((f, s)))

    assert comparison.to_dict() == expected  # the result NDIF sent back, read as the Comparison
    statuses = [s for i, (_, s) in enumerate(heard) if i == 0 or heard[i - 1][1] != s]
    assert statuses == ["RECEIVED", "QUEUED", "RUNNING", "COMPLETED"]
    assert [f for f, _ in heard] == sorted(f for f, _ in heard) and heard[-1][0] == 1.0
    assert server.closed and len(server.posted) == 1  # one job for both prompts and the reduction
    assert model.backend.received_bytes < 2_000


def test_cancel_stops_waiting_for_a_remote_job(on_fake_ndif):
    model, serve = on_fake_ndif
    server = serve(["QUEUED", "RUNNING"], None)  # a job that never finishes
    cancel = threading.Event()
    heard: list[str] = []
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled, match="Cancelled before the result came back"):
        compare_prompts(model, A, B, top_k=3, progress=lambda f, s: heard.append(s), cancel=cancel)
    assert time.monotonic() - started < 5
    assert heard[-1] == "RUNNING" and server.closed


def test_a_cancelled_job_is_not_sent(on_fake_ndif):
    model, serve = on_fake_ndif
    server = serve(["QUEUED"], None)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        compare_prompts(model, A, B, top_k=3, cancel=cancel)
    assert server.posted == []


def test_a_job_repeats_its_status_while_waiting_and_checks_for_a_cancel():
    heard: list[tuple[float, str]] = []
    job = Job(lambda f, s: heard.append((f, s)), every=0.0)
    job.report("QUEUED")
    job.tick()
    assert heard == [(JOB_STAGES["QUEUED"], "QUEUED")] * 2
    job.cancel.set()
    with pytest.raises(Cancelled):
        job.tick()


def test_an_app_rerun_raised_while_waiting_passes_through_untouched(on_fake_ndif):
    """Streamlit stops a script (a Cancel click) by raising its own BaseException from the next
    Streamlit call — here the progress callback. It must reach Streamlit as it is, not become a
    RemoteError, and the wait must end."""
    from streamlit.runtime.scriptrunner_utils.exceptions import RerunException

    model, serve = on_fake_ndif
    server = serve(["QUEUED", "RUNNING"], None)

    def redraw(fraction: float, status: str) -> None:
        if status == "RUNNING":
            raise RerunException(None)

    with pytest.raises(RerunException):
        compare_prompts(model, A, B, top_k=3, progress=redraw)
    assert server.closed
