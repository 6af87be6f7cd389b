"""`make demo`: the whole mission on loopback in one command, for someone who just cloned.

A connected side (a registry with `production` and `production-fips`, a static Helm
repository, and the images the packs list under their hosts' names) on fixed ports that
`bundles/demo.yaml` names, then the real CLI, run as a user would run it: keygen, images,
export, verify, inspect, import into an "air-gapped" registry with the mirror files for
clusters, and the system-scope registries it registered; then the next day's small update,
exported as a delta of the chain `--state` keeps, and imported as the next in order.
Nothing leaves 127.0.0.1. Every process started here is stopped on the way out, on
success, failure, Ctrl-C or SIGTERM.
Errors are one line that says what to do.

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
    NEXT_DAY_REPOSITORY,
    NEXT_DAY_TAG,
    DemoError,
    Landed,
    Ports,
    Seeding,
    build_helm,
    check_ports,
    delta_counts,
    landed_digests,
    landed_images,
    require_binary,
    seed_next_day,
    seed_source,
    serve_at,
    served_digest,
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
    def state(self) -> Path:
        return self.out / "state"

    @property
    def delta(self) -> Path:
        return self.out / "demo-next-day.tar.zst"

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

    @property
    def mirror_config(self) -> Path:
        return self.out / "mirror-config"

    @property
    def xdg_cache(self) -> Path:
        """XDG_CACHE_HOME for the demo's commands: `mirror images` caches what it reads."""
        return self.out / "xdg-cache"


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


def spec_upstreams(args: Sequence[str]) -> dict[str, str]:
    """The `upstreams:` of the spec that `export_args` names: image host -> lab URL."""
    from mirror.spec import load_preset, load_spec

    spec = load_preset(PRESET) if args[0] == "--preset" else load_spec(Path(args[0]))
    return dict(spec.upstreams)


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


def connected_side(
    ports: Ports, paths: Paths, stack: contextlib.ExitStack, upstreams: dict[str, str]
) -> Seeding:
    from mirror.lab.content import corpus_dir

    section("The connected side: lab registries standing in for Palette's defaults")
    source = start_registry_at(ports.source, paths.lab / "source", "source registry")
    stack.callback(source.stop)
    corpus = corpus_dir()
    helm = build_helm(paths.lab / "helm", corpus)
    seeding = seed_source(source, corpus, sorted(helm.glob("*.tgz")), upstreams)
    for line in seeding.lines:
        say(f"  {line}")
    url = stack.enter_context(serve_at(helm, ports.helm))
    say(f"  {url}: Helm repository (index.yaml + charts)")
    say("  the demo spec's upstreams: sends those hosts to the lab; nothing leaves 127.0.0.1")
    if corpus is None:
        say("  note: ../shared/corpus/pack-central not found ($MIRROR_CORPUS): generated packs")
    return seeding


def run_demo(out: Path, target_storage: Path | None = None) -> None:
    started = time.monotonic()
    require_binary()
    ports = Ports.from_env()
    check_ports(ports)
    paths = prepare_out(out)
    env = {
        **os.environ,
        "MIRROR_KEY_PASSWORD": PASSWORD,
        "XDG_CACHE_HOME": str(paths.xdg_cache.resolve()),
    }
    spec = export_args(ports, paths)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, paths.lab, True)
        seeding = connected_side(ports, paths, stack, spec_upstreams(spec))
        say(f"\nThe demo sets MIRROR_KEY_PASSWORD={PASSWORD} (on real hosts: your own secret)")
        say(f"and XDG_CACHE_HOME={show(paths.xdg_cache)}, so your own cache is left alone.")
        mirror(["keygen", "--output-dir", show(paths.keys), "--name", "demo"], env)
        say("\nThe image closure: every image the packs and charts list (no image is fetched).")
        mirror(["images", *spec], env)
        bundle = show(paths.bundle)
        export = [*spec, "--key", show(paths.key), "--state", show(paths.state)]
        mirror(["export", *export, "-o", bundle, "--cache-dir", show(paths.cache)], env)
        artifacts, images = bundle_counts(paths.bundle)
        say(f"\n  the bundle carries {artifacts} artifacts and {images} images")
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
        mirror([*imp, "--mirror-config", show(paths.mirror_config), "--receipt", receipt], env)
        count, bad = landed_digests(paths.bundle, target.url)
        if bad:
            raise DemoError(f"{len(bad)} artifacts differ on the target, first {bad[0]}")
        say(f"\n  checked: the target serves all {count} artifacts with the bundle's digests")
        upstream = {s.ref: s.digest for s in seeding.images}
        show_landed(landed_images(paths.bundle, target.url, upstream))
        show_mirror_files(paths.mirror_config)
        mirror(["registries", "list", "--scope", "system", "--catalog", catalog], env)
        next_day(ports, paths, env, export, imp[2:])
        section("Stopping the lab")
    summary(paths, time.monotonic() - started)


def next_day(
    ports: Ports, paths: Paths, env: dict[str, str], export: list[str], imp: list[str]
) -> None:
    """The daily run, one day on: a small update crosses as a delta of the chain that
    `--state` keeps, and the import applies it as the next in order (docs/SYNC.md)."""
    section("The next day: a small update crosses as a delta (docs/SYNC.md)")
    source = f"http://127.0.0.1:{ports.source}"
    digest = seed_next_day(source)
    say(f"  {source}: new tag {NEXT_DAY_REPOSITORY}:{NEXT_DAY_TAG} over layers already sent")
    delta = show(paths.delta)
    mirror(["export", *export, "-o", delta, "--cache-dir", show(paths.cache)], env)
    d = delta_counts(paths.delta)
    full = paths.bundle.stat().st_size
    say(
        f"\n  delta {d.sequence} of the chain carries {d.carried} blobs and leaves out "
        f"{d.left_out} the far side holds: {d.size / 1024:.0f} KiB "
        f"(the first bundle: {full / 2**20:.1f} MiB)"
    )
    mirror(["import", delta, *imp], env)
    target = imp[imp.index("--target") + 1]
    got = served_digest(target, NEXT_DAY_REPOSITORY, NEXT_DAY_TAG)
    if got != digest:
        raise DemoError(
            f"{NEXT_DAY_REPOSITORY}:{NEXT_DAY_TAG} on the target is {got}, not {digest}"
        )
    say(f"\n  checked: the target serves {NEXT_DAY_REPOSITORY}:{NEXT_DAY_TAG}  {digest[:19]}")


def bundle_counts(bundle: Path) -> tuple[int, int]:
    """(artifacts, images) that manifest.json lists."""
    import json

    from mirror.bundle.reader import BundleReader

    manifest = json.loads(BundleReader(bundle).head()[0])
    return len(manifest["artifacts"]), len(manifest.get("images") or [])


def show_landed(landed: Sequence[Landed], shown: int = 2) -> None:
    """Fail unless every image landed with its upstream digest; show where a few went."""
    if not landed:
        raise DemoError("the bundle carries no images, but the demo's packs list some")
    bad = [i for i in landed if not i.ok]
    if bad:
        b = bad[0]
        raise DemoError(
            f"{len(bad)} images differ on the target, first {b.where}: {b.target}, "
            f"bundle {b.bundle}, upstream {b.upstream}"
        )
    say(f"  checked: all {len(landed)} images landed with their upstream digests, for example")
    for image in landed[:shown]:
        say(f"    {image.ref}")
        say(f"      -> {image.where}  {image.target[:19]}")
    if len(landed) > shown:
        say(f"    ... and {len(landed) - shown} more under spectro-images/<host>/")


def show_mirror_files(folder: Path) -> None:
    """The two files that make clusters pull from the target: print them as written."""
    from mirror.mirrorconfig import CERTS_DIR, HOSTS_FILE, MIRROR_FILE

    section("The mirror files: clusters pull these images from the target (docs/AIRGAP-IMAGES.md)")
    swap = folder / MIRROR_FILE
    hosts = sorted(p.parent.name for p in (folder / CERTS_DIR).glob(f"*/{HOSTS_FILE}"))
    if not swap.is_file() or not hosts:
        raise DemoError(f"import wrote no mirror files in {show(folder)}")
    say("  image-swap (Palette's mirrorRegistries) reads one line of UPSTREAM::ENDPOINT pairs:")
    say(f"\n$ cat {show(swap)}")
    say(swap.read_text().rstrip("\n"))
    one = next((h for h in hosts if h != "docker.io"), hosts[0])  # docker.io's is the odd one
    toml = folder / CERTS_DIR / one / HOSTS_FILE
    say(f"\n  containerd reads one certs.d/<host>/hosts.toml per host ({', '.join(hosts)}):")
    say(f"\n$ cat {show(toml)}")
    say(toml.read_text().rstrip("\n"))


def summary(paths: Paths, seconds: float) -> None:
    b, pub, cat = show(paths.bundle), show(paths.pub), show(paths.catalog)
    size = paths.bundle.stat().st_size / 1024 / 1024
    say(f"  every process the demo started is stopped ({seconds:.0f} s in all)")
    section(f"What the demo made, in {show(paths.out)}/")
    say(f"  bundle    {b} ({size:.1f} MiB), {b}.sig, {b}.sha256")
    say(f"  keys      {show(paths.key)} (password {PASSWORD}), {pub}")
    say(f"  delta     {show(paths.delta)} (the next day's), chain state {show(paths.state)}/")
    say(f"  catalog   {cat} (system-scope registries), receipt {show(paths.receipt)}")
    mirrors = show(paths.mirror_config)
    say(f"  mirrors   {mirrors}/mirror-registries.txt, {mirrors}/certs.d/<host>/hosts.toml")
    section("Try by hand next (mirror is .venv/bin/mirror; `. .venv/bin/activate`)")
    say(f"  mirror inspect {b} --format markdown")
    say(f"  mirror verify {b} --key {pub} --json")
    say(f"  mirror registries list --scope system --catalog {cat} --json")
    say(f"  zstd -dc {b} | tar -tv | head          # a plain .tar.zst")
    say("  docs/VERIFYING.md: the same checks with openssl, sha256sum, zstd and tar only")
    say("  docs/AIRGAP-IMAGES.md: wiring the mirror files into Palette and containerd")
    say("  README.md, 'The real-world flow': the same commands against Palette's registries")


# ---------------------------------------------------------------- CLI reference


def cli_reference() -> str:
    """docs/CLI.md: click's help of every command, at a fixed width so it never drifts."""
    import click

    from mirror.cli import SETTINGS, cli

    out = [
        "# CLI reference",
        "",
        "Generated from click's help by `python -m mirror.lab.demo --cli-doc > docs/CLI.md`;",
        "tests/test_readme.py fails when this file and `mirror --help` disagree.",
        "",
    ]
    # The same settings `mirror` runs with (click caches each command's help option, so a
    # context built without them would print differently after the first real run).
    # 98: what click prints on any terminal of 100 columns or more (max_content_width - 2).
    root = click.Context(cli, info_name="mirror", terminal_width=98, **SETTINGS)
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
