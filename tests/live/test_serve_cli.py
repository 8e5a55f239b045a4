"""``servesim serve`` on the command line: one-line errors (exit 2), the URL printed, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml

from servesim.cli.app import main

SCENARIO = {
    "name": "serve-cli",
    "cluster": {"num_replicas": 2, "model": "llama-3-8b", "hardware": "h100"},
}


@pytest.fixture
def scenario_file(tmp_path) -> Path:
    path = tmp_path / "serve.yaml"
    path.write_text(yaml.safe_dump(SCENARIO))
    return path


@pytest.fixture
def busy_port():
    """A port something else listens on (commands that wrongly got past their check fail to bind it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def one_line_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2, (out, err)
    assert "Traceback" not in err and out == ""
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_a_missing_scenario_is_one_line(tmp_path, busy_port, capsys):
    line = one_line_error(["serve", str(tmp_path / "nope.yaml"), "--port", str(busy_port)], capsys)
    assert "nope.yaml" in line


def test_a_bad_time_scale_is_one_line(scenario_file, busy_port, capsys):
    line = one_line_error(["serve", str(scenario_file), "--time-scale", "0", "--port", str(busy_port)], capsys)
    assert line == "error: --time-scale = 0: must be a positive number"


def test_a_scenario_serve_cannot_emulate_is_one_line(busy_port, capsys):
    example = Path(__file__).parents[2] / "examples" / "pd-disaggregation.yaml"
    line = one_line_error(["serve", str(example), "--port", str(busy_port)], capsys)
    assert line.startswith("error: servesim serve: cluster.disaggregation is not emulated")


def test_a_port_in_use_is_one_line(scenario_file, busy_port, capsys):
    line = one_line_error(["serve", str(scenario_file), "--port", str(busy_port)], capsys)
    assert line.startswith(f"error: cannot listen on 127.0.0.1:{busy_port}: ")


def test_serve_prints_its_url_and_stops_cleanly_on_ctrl_c(scenario_file):
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "servesim", "serve", str(scenario_file), "--port", "0",
                             "--time-scale", "10"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        banner = proc.stdout.readline()
        assert banner.startswith("servesim serve: scenario 'serve-cli': 2 x llama-3-8b on h100"), banner
        url = re.search(r"(http://127\.0\.0\.1:\d+)/v1", proc.stdout.readline()).group(1)
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
        answer = httpx.post(f"{url}/v1/completions", json={"prompt": "hi", "max_tokens": 3}, timeout=10).json()
        assert answer["usage"]["completion_tokens"] == 3
        # A long stream in flight (8,000 tokens: about a minute simulated) when Ctrl-C comes.
        body = {"prompt": "hi", "max_tokens": 8000, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=30) as stream:
            lines = stream.iter_lines()
            assert next(line for line in lines if line).startswith("data: {")
            proc.send_signal(signal.SIGINT)
            rest = [line for line in lines if line.startswith("data: ")]
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert rest[-1] == "data: [DONE]"
    assert json.loads(rest[-2][len("data: "):])["error"]["message"] == "the server is shutting down"
    assert proc.returncode == 0, err
    assert out.strip().endswith("servesim serve: stopped")
    assert "Traceback" not in err
