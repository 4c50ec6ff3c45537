"""What an agent lets a job do: shell or not, which executables, which environment,
which user. A refused job comes back ``failed`` with the rule that refused it."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from agentd.config import AgentConfig
from schemas.messages import ExecJob

SHELL = "/bin/sh"
# Names a request's env may never set: they change what runs, not just how.
PROTECTED_ENV = frozenset({"PATH", "IFS", "ENV", "BASH_ENV", "SHELLOPTS", "PS4", "PYTHONPATH"})


class PolicyError(ValueError):
    """The policy in the settings cannot be applied; the message says why."""


@dataclass(frozen=True, slots=True)
class Policy:
    allow_shell: bool
    allowed_commands: frozenset[str]
    """Real paths of the executables allowed; empty allows every one."""
    base_env: dict[str, str]
    allow_request_env: bool
    run_as_user: str | None
    run_as_group: str | None

    @classmethod
    def from_config(cls, config: AgentConfig) -> Policy:
        """Raises: PolicyError for an allowed command not found, or run-as without root."""
        search_path = config.base_env.get("PATH", os.defpath)
        allowed = set()
        for command in config.allowed_commands:
            resolved = resolve_command(command, search_path)
            if resolved is None:
                raise PolicyError(f"allowed_commands: {command!r} not found on {search_path}")
            allowed.add(resolved)
        if (config.run_as_user or config.run_as_group) and os.geteuid() != 0:
            raise PolicyError("run_as_user/run_as_group need the agent to run as root")
        return cls(
            allow_shell=config.allow_shell,
            allowed_commands=frozenset(allowed),
            base_env=dict(config.base_env),
            allow_request_env=config.allow_request_env,
            run_as_user=config.run_as_user,
            run_as_group=config.run_as_group,
        )

    def refusal(self, job: ExecJob) -> str | None:
        """Why the job may not run here, or None."""
        if job.shell and not self.allow_shell:
            return "refused by policy: shell is not allowed on this agent (allow_shell)"
        if job.env and not self.allow_request_env:
            return "refused by policy: per-request env is not allowed (allow_request_env)"
        for name in job.env:
            if name in self.base_env or name in PROTECTED_ENV or name.startswith("LD_"):
                return f"refused by policy: request env may not set {name} (base_env, loader)"
        if self.allowed_commands and not job.shell:
            if "/" in job.command and not os.path.isabs(job.command):
                return (
                    "refused by policy: a relative path cannot be checked against allowed_commands"
                )
            if self._resolve(job.command) not in self.allowed_commands:
                return f"refused by policy: {job.command!r} is not in allowed_commands"
        return None

    def argv(self, job: ExecJob) -> list[str]:
        """What to execute: under an allowlist, the very file that was checked."""
        if job.shell:
            return [SHELL, "-c", job.command]
        if self.allowed_commands:
            return [self._resolve(job.command) or job.command, *job.args]
        return [job.command, *job.args]

    def _resolve(self, command: str) -> str | None:
        return resolve_command(command, self.base_env.get("PATH", os.defpath))

    def environment(self, job: ExecJob) -> dict[str, str]:
        return {**self.base_env, **job.env}


def resolve_command(command: str, search_path: str) -> str | None:
    """The real path a command runs as: a path as given, a name looked up on ``search_path``."""
    found = command if "/" in command else shutil.which(command, path=search_path)
    return os.path.realpath(found) if found else None
