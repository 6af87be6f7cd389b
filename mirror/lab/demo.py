"""`make demo`: the whole mission on loopback in one command, for someone who just cloned.

A connected side (a registry with `production` and `production-fips`, a static Helm
repository) on fixed ports that `bundles/demo.yaml` names, then the real CLI, run as a user
would run it: keygen, export, verify, inspect, import into an "air-gapped" registry, and the
system-scope registries it registered. Every process started here is stopped on the way
out, on success, failure, Ctrl-C or SIGTERM. Errors are one line that says what to do.

`python -m mirror.lab.demo --cli-doc` prints docs/CLI.md (click's help of every command).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from mirror.lab.demolab import (
    DEFAULT_PORT,
    DemoError,
    Ports,
    build_helm,
    check_ports,
    landed_digests,
    require_binary,
    seed_source,
    serve_at,
    start_registry_at,
)

PASSWORD = "demo-only-password"  # a throwaway key for a throwaway bundle
MARKER = ".mirror-demo"
PRESET = "demo"


class _Stopped(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C so every `finally` stops its process."""


@dataclass(frozen=True)
class Paths:
    """Everything the demo leaves behind lives under one folder (in .gitignore)."""

    out: Path

    @property
    def keys(self) -> Path:
        return self.out / "keys"

    @property
    def key(self) -> Path:
        return self.keys / "demo.key"

    @property
    def pub(self) -> Path:
        return self.keys / "demo.pub"

    @property
    def bundle(self) -> Path:
        return self.out / "demo.tar.zst"

    @property
    def catalog(self) -> Path:
        return self.out / "registries.json"

    @property
    def receipt(self) -> Path:
        return self.out / "receipt.json"

    @property
    def cache(self) -> Path:
        return self.out / "cache"

    @property
    def lab(self) -> Path:
        return self.out / "lab"


def show(path: Path) -> str:
    """A path as the user would type it from here."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def say(text: str = "") -> None:
    print(text, flush=True)


def section(title: str) -> None:
    say(f"\n== {title}")


# ---------------------------------------------------------------- running the CLI


def mirror(args: Sequence[str], env: dict[str, str]) -> None:
    """Run the real CLI as a user would, showing the command and its own output."""
    say(f"\n$ mirror {shlex.join(args)}")
    code = subprocess.run([sys.executable, "-m", "mirror", *args], env=env, check=False).returncode
    if code != 0:
        raise DemoError(f"`mirror {args[0]}` failed (exit {code}); its message is above")


def export_args(ports: Ports, paths: Paths) -> list[str]:
    """`--preset demo` on the default ports; a copy of it on other ports."""
    if ports.default:
        return ["--preset", PRESET]
    from mirror.spec import preset_dirs

    preset = next(d / f"{PRESET}.yaml" for d in preset_dirs() if (d / f"{PRESET}.yaml").is_file())
    text = preset.read_text()
    for old, new in ((DEFAULT_PORT, ports.source), (DEFAULT_PORT + 1, ports.helm)):
        text = text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
    spec = paths.out / "demo.yaml"
    spec.write_text(text)
    return [show(spec)]


# ---------------------------------------------------------------- the demo


def prepare_out(out: Path) -> Paths:
    """A fresh demo folder; refuse to wipe a folder the demo did not make."""
    if out.exists():
        if not (out / MARKER).is_file() and any(out.iterdir()):
            raise DemoError(f"{show(out)} exists and is not a demo folder: move it or pass --out")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("made by `make demo`; removed by the next run\n")
    return Paths(out)


def connected_side(ports: Ports, paths: Paths, stack: contextlib.ExitStack) -> None:
    from mirror.lab.content import corpus_dir

    section("The connected side: lab registries standing in for Palette's defaults")
    source = start_registry_at(ports.source, paths.lab / "source", "source registry")
    stack.callback(source.stop)
    corpus = corpus_dir()
    for line in seed_source(source, corpus):
        say(f"  {line}")
    url = stack.enter_context(serve_at(build_helm(paths.lab / "helm", corpus), ports.helm))
    say(f"  {url}: Helm repository (index.yaml + charts)")
    if corpus is None:
        say("  note: ../shared/corpus/pack-central not found ($MIRROR_CORPUS): generated packs")


def run_demo(out: Path, target_storage: Path | None = None) -> None:
    started = time.monotonic()
    require_binary()
    ports = Ports.from_env()
    check_ports(ports)
    paths = prepare_out(out)
    env = {**os.environ, "MIRROR_KEY_PASSWORD": PASSWORD}
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, paths.lab, True)
        connected_side(ports, paths, stack)
        say(f"\nThe demo sets MIRROR_KEY_PASSWORD={PASSWORD} (on real hosts: your own secret).")
        mirror(["keygen", "--output-dir", show(paths.keys), "--name", "demo"], env)
        bundle = show(paths.bundle)
        export = [*export_args(ports, paths), "--key", show(paths.key), "-o", bundle]
        mirror(["export", *export, "--cache-dir", show(paths.cache)], env)
        mirror(["verify", bundle, "--key", show(paths.pub)], env)
        mirror(["inspect", bundle], env)
        section("The air-gapped side: a registry of its own, and nothing else")
        target = start_registry_at(
            ports.target, paths.lab / "target", "target registry", target_storage
        )
        stack.callback(target.stop)
        say(f"  {target.url}: empty target registry")
        catalog = show(paths.catalog)
        receipt = show(paths.receipt)
        pub = show(paths.pub)
        imp = ["import", bundle, "--target", target.url, "--key", pub, "--catalog", catalog]
        mirror([*imp, "--receipt", receipt], env)
        count, bad = landed_digests(paths.bundle, target.url)
        if bad:
            raise DemoError(f"{len(bad)} artifacts differ on the target, first {bad[0]}")
        say(f"\n  checked: the target serves all {count} artifacts with the bundle's digests")
        mirror(["registries", "list", "--scope", "system", "--catalog", catalog], env)
        section("Stopping the lab")
    summary(paths, time.monotonic() - started)


def summary(paths: Paths, seconds: float) -> None:
    b, pub, cat = show(paths.bundle), show(paths.pub), show(paths.catalog)
    size = paths.bundle.stat().st_size / 1024 / 1024
    say(f"  every process the demo started is stopped ({seconds:.0f} s in all)")
    section(f"What the demo made, in {show(paths.out)}/")
    say(f"  bundle    {b} ({size:.1f} MiB), {b}.sig, {b}.sha256")
    say(f"  keys      {show(paths.key)} (password {PASSWORD}), {pub}")
    say(f"  catalog   {cat} (system-scope registries), receipt {show(paths.receipt)}")
    section("Try by hand next (mirror is .venv/bin/mirror; `. .venv/bin/activate`)")
    say(f"  mirror inspect {b} --format markdown")
    say(f"  mirror verify {b} --key {pub} --json")
    say(f"  mirror registries list --scope system --catalog {cat} --json")
    say(f"  zstd -dc {b} | tar -tv | head          # a plain .tar.zst")
    say("  docs/VERIFYING.md: the same checks with openssl, sha256sum, zstd and tar only")
    say("  README.md, 'The real-world flow': the same commands against Palette's registries")


# ---------------------------------------------------------------- CLI reference


def cli_reference() -> str:
    """docs/CLI.md: click's help of every command, at a fixed width so it never drifts."""
    import click

    from mirror.cli import cli

    out = [
        "# CLI reference",
        "",
        "Generated from click's help by `python -m mirror.lab.demo --cli-doc > docs/CLI.md`;",
        "tests/test_readme.py fails when this file and `mirror --help` disagree.",
        "",
    ]
    # The same settings `mirror` runs with (click caches each command's help option, so a
    # context built without them would print differently after the first real run).
    root = click.Context(
        cli,
        info_name="mirror",
        terminal_width=100,
        max_content_width=100,
        help_option_names=["-h", "--help"],
    )
    todo: list[tuple[click.Context, click.Command]] = [(root, cli)]
    while todo:  # depth first: a group, then its commands
        ctx, cmd = todo.pop()
        text = cmd.get_help(ctx)
        out += [f"## {ctx.command_path}", "", "```text", text, "```", ""]
        if isinstance(cmd, click.Group):
            subs = [(n, cmd.get_command(ctx, n)) for n in cmd.list_commands(ctx)]
            for name, sub in reversed(subs):
                if sub is not None and not sub.hidden:
                    todo.append((click.Context(sub, info_name=name, parent=ctx), sub))
    return "\n".join(out)


# ---------------------------------------------------------------- entry point


def _raise_stopped(signum: int, frame: FrameType | None) -> None:
    raise _Stopped(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mirror.lab.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="default: demo-out")
    parser.add_argument("--cli-doc", action="store_true", help="print docs/CLI.md and exit")
    # Tests keep the target's storage to read back what it serves after the demo stops it.
    parser.add_argument("--target-storage", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cli_doc:
        sys.stdout.write(cli_reference())
        return 0
    old = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        run_demo(args.out, args.target_storage)
        return 0
    except DemoError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, _Stopped) as exc:
        print("demo: interrupted; every process it started is stopped", file=sys.stderr)
        return 128 + (exc.args[0] if isinstance(exc, _Stopped) else signal.SIGINT)
    except Exception as exc:  # a newcomer gets one line; MIRROR_DEMO_DEBUG=1 for the rest
        if os.environ.get("MIRROR_DEMO_DEBUG"):
            raise
        print(f"demo: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
