"""Confinement of the codex processes whose model can run commands (execute runs, chat with
`chatLeanFeatures` off): each runs in a bubblewrap (`bwrap`) mount namespace where the
gateway's data folder, its settings file and every other account do not exist.

Codex's own sandbox (`--sandbox read-only|workspace-write`) confines what a command may write,
not what it may read (docs/codex-protocol-notes.md): with it alone, a key holder's model could
`cat` the settings secrets, the key database and every linked account's login. So the gateway
wraps such a process in its own sandbox, built from an allow-list rather than a deny-list:

- the system folders (`/usr`, `/etc`, the `/bin` and `/lib` links...) and the codex binary's
  folder, read-only;
- the account's CODEX_HOME at `/codexpool/home` and its private SQLite home at
  `/codexpool/state` (read-write: codex refreshes the login and keeps its databases there);
- the run's folder: an execute run's `cwd` at its real path (read-only under the `read-only`
  sandbox), a chat app-server's scratch folder at `/codexpool/work`;
- a private `/tmp`, a fresh `/proc` (own pid namespace) and a minimal `/dev`.

Nothing else of the host is mounted, so `data/` is simply absent. A gateway path that lies
inside one of the mounted folders anyway (a settings file in `/etc/codexpool/`, a data folder
inside an execute root) is masked: an empty tmpfs over a folder, `/dev/null` over a file.

Codex's own sandbox still runs inside ours (it nests: verified as root and as an unprivileged
user), so writes stay confined as before. `--die-with-parent` and the pid namespace tie every
process inside, codex's own sandbox helpers included, to the outer bwrap, which stays in the
process group the gateway ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .process import proc_table

INSIDE_HOME = Path("/codexpool/home")  # the account's CODEX_HOME, as the sandbox sees it
INSIDE_STATE = Path("/codexpool/state")  # its private SQLite home (state_dir.py)
INSIDE_WORK = Path("/codexpool/work")  # a chat app-server's scratch folder (its cwd)
INSIDE_TMP = "/tmp"  # noqa: S108 (a private tmpfs, not the host's /tmp)
# Read-only system folders; missing ones are skipped, host symlinks (merged /usr) are copied.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Namespaces of their own; the network stays shared (codex talks to its backend).
_NAMESPACE_ARGS = (
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
    "--unshare-cgroup-try",
    "--die-with-parent",  # the sandbox dies with the gateway, even on SIGKILL
)
PROBE_TIMEOUT_S = 10.0


class IsolationError(OSError):
    """The sandbox cannot be built for this run; the message is one line saying why."""


@dataclass(frozen=True)
class Isolation:
    """The bubblewrap sandbox of one gateway: its binary and the paths it must never show."""

    bwrap: str  # path of the bwrap binary (setting bwrapPath, else PATH's)
    hidden: tuple[Path, ...]  # the data folder, the Codex homes root, the settings file

    def command(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        codex_home: Path,
        state_dir: Path | None,
        workdir: Path,
        inside_workdir: Path | None = None,
        workdir_writable: bool = True,
    ) -> tuple[list[str], dict[str, str]]:
        """Return (argv, env) that run codex's `argv` inside the sandbox.

        `workdir` is mounted at `inside_workdir` (default: its own path) and is the process's
        working folder. The environment's CODEX_HOME and CODEX_SQLITE_HOME are rewritten to
        their paths inside; HOME and TMPDIR point at the private /tmp.
        Raises IsolationError when `workdir` lies inside a hidden path.
        """
        workdir = workdir.resolve()
        inside_workdir = inside_workdir or workdir
        if inside_workdir == workdir:  # shown at its real path: never inside the gateway's
            for secret in self.hidden:
                if _within(workdir, secret):
                    raise IsolationError(f"{workdir} lies inside the gateway's own {secret}")
        codex = Path(argv[0]).resolve()
        mounts = _Mounts(self.bwrap, self.hidden)
        mounts.system()
        for extra in _outside_targets(("/etc/resolv.conf",), mounts.shown):  # systemd-resolved
            mounts.show(extra)
        codex_dir = _codex_dir(codex)
        if not any(_within(codex_dir, s) for s in mounts.shown):
            mounts.show(codex_dir)
        if inside_workdir == workdir:
            mounts.show(workdir, writable=workdir_writable)
        else:
            mounts.args += [
                "--bind" if workdir_writable else "--ro-bind",
                str(workdir),
                str(inside_workdir),
            ]
        args = mounts.args
        args += ["--bind", str(codex_home), str(INSIDE_HOME)]
        if state_dir is not None:
            args += ["--bind", str(state_dir), str(INSIDE_STATE)]
        args += ["--chdir", str(inside_workdir), "--", str(codex), *argv[1:]]
        inner = dict(env)
        inner["CODEX_HOME"] = str(INSIDE_HOME)
        if state_dir is not None:
            inner["CODEX_SQLITE_HOME"] = str(INSIDE_STATE)
        inner["HOME"] = INSIDE_TMP
        inner["TMPDIR"] = INSIDE_TMP
        inner.pop("PWD", None)
        return args, inner

    def problem(self) -> str | None:
        """Return why no sandbox can run on this machine (None: it can). Blocking, a few ms:
        run once at start-up and by `codexpool check`."""
        if not (os.path.isfile(self.bwrap) and os.access(self.bwrap, os.X_OK)):
            return f"bubblewrap not found ({self.bwrap})"
        return self.probe()

    def probe(self) -> str | None:
        """Run `true` in an empty sandbox built like a real one; return why it failed (None:
        it works)."""
        mounts = _Mounts(self.bwrap, self.hidden)
        mounts.system()
        args = [*mounts.args, "--", "true"]
        return _run_probe(args, "cannot create its sandbox")

    def probe_nesting(self) -> str | None:
        """Tell whether a sandbox inside ours can create its own namespaces, as codex's own
        sandbox does for every command (None: it can)."""
        mounts = _Mounts(self.bwrap, self.hidden)
        mounts.system()
        bwrap_dir = Path(self.bwrap).resolve().parent
        if not any(_within(bwrap_dir, s) for s in mounts.shown):
            mounts.show(bwrap_dir)
        args = [*mounts.args, "--"]
        # Like codex 0.169's own: a user and mount namespace over a read-only root, with our
        # /proc (a fresh one cannot be mounted there when the gateway runs as root).
        args += [str(Path(self.bwrap).resolve()), "--unshare-user", "--ro-bind", "/", "/"]
        args += ["--dev", "/dev", "--", "true"]
        return _run_probe(args, "cannot nest a sandbox inside its own")


def find_bwrap(configured: str = "") -> str | None:
    """Return the bwrap binary to use: the configured one, else `bwrap` on PATH."""
    found = shutil.which(configured or "bwrap")
    return str(Path(found).resolve()) if found else None


def gateway_isolation(bwrap_setting: str, hidden: Iterable[Path | None]) -> Isolation:
    """Return the gateway's sandbox. Without a bwrap binary it names the missing one, so a
    spawn fails (never runs unconfined) and `problem()` says why."""
    paths = tuple(dict.fromkeys(Path(p).resolve() for p in hidden if p is not None))
    return Isolation(find_bwrap(bwrap_setting) or bwrap_setting or "bwrap", paths)


def descendant_named(pid: int, prefix: str) -> int | None:
    """Return the pid of the first descendant of `pid` whose command name starts with
    `prefix` (codex inside its sandbox), or None; reads /proc (blocking, ~1 ms)."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for child, name, _state, parent, _group in proc_table():
        names[child] = name
        children.setdefault(parent, []).append(child)
    queue = list(children.get(pid, []))
    while queue:
        child = queue.pop(0)  # breadth first: codex before whatever codex started
        if names.get(child, "").startswith(prefix):
            return child
        queue.extend(children.get(child, []))
    return None


def _run_probe(args: list[str], what: str) -> str | None:
    try:
        proc = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap {args[0]} {what}: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [
            f"exit status {proc.returncode}"
        ]
        return f"bubblewrap {args[0]} {what}: {tail[0]}"
    return None


class _Mounts:
    """The bwrap arguments of a sandbox's host folders: each folder shown is followed by masks
    over the hidden paths inside it, so a later mount can never uncover one."""

    def __init__(self, bwrap: str, hidden: Sequence[Path]) -> None:
        self.args: list[str] = [bwrap, *_NAMESPACE_ARGS]
        self.hidden = hidden
        self.shown: list[Path] = []

    def system(self) -> None:
        """Show the host's system folders read-only, a symlink (merged /usr links /bin to
        usr/bin) as the same symlink; then a private /tmp, /proc and /dev."""
        for path in SYSTEM_PATHS:
            if os.path.islink(path):
                self.args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                self.show(Path(path))
        # Before any host folder below: a `cwd` under the host's /tmp stays visible.
        self.args += ["--tmpfs", INSIDE_TMP, "--proc", "/proc", "--dev", "/dev"]

    def show(self, path: Path, writable: bool = False) -> None:
        """Mount a host path at the same path, then mask the hidden paths inside it."""
        real = path.resolve()
        self.args += ["--bind" if writable else "--ro-bind", str(real), str(real)]
        self.shown.append(real)
        for secret in self.hidden:
            if not _within(secret, real):
                continue
            if secret.is_dir():
                self.args += ["--tmpfs", str(secret), "--remount-ro", str(secret)]
            elif secret.exists():
                self.args += ["--ro-bind", "/dev/null", str(secret)]


def _outside_targets(links: Iterable[str], shown: Sequence[Path]) -> list[Path]:
    """Return the real files behind `links` that lie outside every shown folder."""
    out = []
    for link in links:
        try:
            real = Path(link).resolve(strict=True)
        except (OSError, RuntimeError):
            continue
        if not any(_within(real, s) for s in shown):
            out.append(real)
    return out


def _codex_dir(codex: Path) -> Path:
    """Return what to mount for the codex binary: the npm package's vendor folder (it holds
    codex's own bwrap and rg beside `bin/codex`), else the binary's own folder."""
    vendor = codex.parent.parent
    if codex.parent.name == "bin" and (vendor / "codex-resources").is_dir():
        return vendor
    return codex.parent


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
