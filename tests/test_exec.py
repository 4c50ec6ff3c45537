"""What one host does with a job, seen through the real HTTP API and a real agent."""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.helpers import Controller, LiveAgent, gone


def reported_child(stdout: str) -> int:
    """The pid a test script printed as ``child=<pid>``."""
    return int(stdout.partition("child=")[2].split()[0])


async def run_one(controller: Controller, body: dict[str, object]) -> dict[str, object]:
    response = await controller.exec("agent-1", body)
    assert response.status == 202, response.body
    uuid.UUID(response.body["job_id"])
    [result] = response.body["results"]
    assert result["hostname"] == "agent-1"
    assert result["job_id"] == response.body["job_id"]
    return result


async def test_completed_command_returns_output_and_exit_code(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller)
    result = await run_one(controller, {"command": "echo", "args": ["hello", "world"]})
    assert result["status"] == "completed"
    assert result["stdout"] == "hello world\n"
    assert result["exit_code"] == 0
    assert result["changed"] is True
    assert result["error"] is None
    assert result["stdout_truncated"] is False
    assert result["stdout_bytes"] == len("hello world\n")


async def test_nonzero_exit_is_completed_with_exit_code_and_stderr(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller)
    result = await run_one(controller, {"command": "sh", "args": ["-c", "echo oops >&2; exit 3"]})
    assert result["status"] == "completed"
    assert result["exit_code"] == 3
    assert result["stderr"] == "oops\n"
    assert result["changed"] is True


async def test_missing_executable_fails_without_running(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller)
    result = await run_one(controller, {"command": "/nonexistent/nexec-no-such-binary"})
    assert result["status"] == "failed"
    assert result["changed"] is False
    assert result["exit_code"] is None
    assert "command not found" in result["error"]
    assert "/nonexistent/nexec-no-such-binary" in result["error"]


async def test_missing_cwd_fails_naming_the_directory(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller)
    result = await run_one(controller, {"command": "pwd", "cwd": "/nonexistent/nexec-dir"})
    assert result["status"] == "failed"
    assert result["changed"] is False
    assert "working directory '/nonexistent/nexec-dir'" in result["error"]


async def test_cwd_is_used(controller: Controller, live_agent: LiveAgent, tmp_path: Path) -> None:
    await live_agent(controller)
    result = await run_one(controller, {"command": "pwd", "cwd": str(tmp_path)})
    assert result["stdout"] == f"{tmp_path}\n"


async def test_shell_metacharacters_arrive_literally(
    controller: Controller, live_agent: LiveAgent, tmp_path: Path
) -> None:
    await live_agent(controller)
    (tmp_path / "a-file").write_text("")
    args = ["$(id)", ";", "*", "`whoami`", "&&", "|", "> x", "$HOME", "'quoted'"]
    result = await run_one(
        controller, {"command": "printf", "args": ["%s\\n", *args], "cwd": str(tmp_path)}
    )
    assert result["stdout"].splitlines() == args
    assert not (tmp_path / "x").exists()


async def test_stdin_is_dev_null(controller: Controller, live_agent: LiveAgent) -> None:
    await live_agent(controller)
    result = await run_one(controller, {"command": "cat", "timeout": 5})
    assert result["status"] == "completed"
    assert result["stdout"] == ""


async def test_timeout_kills_the_process_group_and_keeps_partial_output(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller)
    script = "sleep 300 & echo child=$!; echo partial; sleep 300"
    result = await run_one(controller, {"command": "sh", "args": ["-c", script], "timeout": 1})
    assert result["status"] == "timeout"
    assert result["changed"] is True
    assert "timed out after 1s" in result["error"]
    assert "partial" in result["stdout"]
    grandchild = reported_child(result["stdout"])
    assert await gone(grandchild), "a grandchild outlived the timeout"


async def test_timeout_sigkills_a_group_that_ignores_sigterm(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "agent-1", kill_grace_s=0.5)
    script = "trap '' TERM; sleep 300 & echo child=$!; wait"
    result = await run_one(controller, {"command": "sh", "args": ["-c", script], "timeout": 1})
    assert result["status"] == "timeout"
    assert result["exit_code"] == -9
    grandchild = reported_child(result["stdout"])
    assert await gone(grandchild), "a grandchild ignoring SIGTERM survived"


async def test_background_child_holding_stdout_does_not_hang_the_job(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller)
    script = "sleep 300 & echo child=$!"
    result = await run_one(controller, {"command": "sh", "args": ["-c", script], "timeout": 60})
    assert result["status"] == "completed"
    assert result["exit_code"] == 0
    grandchild = reported_child(result["stdout"])
    assert await gone(grandchild)


async def test_output_is_capped_keeping_head_and_tail(
    controller: Controller, live_agent: LiveAgent
) -> None:
    await live_agent(controller, "agent-1", output_cap_bytes=4096)
    script = "echo FIRST; head -c 100000 /dev/zero | tr '\\0' x; echo; echo LAST"
    result = await run_one(controller, {"command": "sh", "args": ["-c", script]})
    assert result["status"] == "completed"
    assert result["stdout_truncated"] is True
    assert result["stderr_truncated"] is False
    assert result["stdout_bytes"] == len("FIRST\n") + 100000 + len("\nLAST\n")
    assert result["stdout"].startswith("FIRST\n")
    assert result["stdout"].endswith("LAST\n")
    assert "bytes omitted" in result["stdout"]
    assert len(result["stdout"]) < 4096 + 100
