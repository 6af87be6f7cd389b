"""The CLI contract: commands, JSON documents, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from faultproxy import write_spec

from mirror.cli import main

COMMANDS = [
    ["registries", "list"],
    ["keygen"],
    ["export"],
    ["verify"],
    ["inspect"],
    ["import"],
]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_registries_list_json_gives_the_six_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registries", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == [
        "Bitnami",
        "Public Spectro Helm Repo",
        "Public Repo",
        "Palette Registry",
        "Palette Registry FIPS",
        "Palette Community Registry",
    ]
    for row in rows:
        assert set(row) >= {"name", "kind", "url", "basePath", "fips", "scope", "providerType"}
        assert row["fips"] is (row["name"] == "Palette Registry FIPS")
        assert row["scope"] == "default"


def test_registries_list_fips_keeps_the_fips_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["registries", "list", "--fips", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["basePath"], r["providerType"]) for r in rows] == [
        ("Palette Registry FIPS", "production-fips", "pack")
    ]


def test_registries_list_table_and_empty_system_scope(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["registries", "list"]) == 0
    out = capsys.readouterr().out
    assert "Palette Registry FIPS" in out and "production-fips" in out
    catalog = tmp_path / "none.json"
    assert (
        main(["registries", "list", "--scope", "system", "--catalog", str(catalog), "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    assert "Usage: mirror" in capsys.readouterr().out


def test_bad_spec_is_exit_2_with_file_and_pointer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nregistries:\n  - name: A\n    kind: ocii\n    url: http://x\n")
    assert main(["export", str(spec), "--dry-run"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "spec.yaml: /registries/0/kind: 'ocii' is not one of ['oci', 'helm', 'pack']" in line


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["export", "--registry", "Nope", "--dry-run"], "Nope"),
        (["export", "/no/such/spec.yaml", "--dry-run"], "/no/such/spec.yaml"),
        (["export", "--preset", "nope", "--dry-run"], "'nope' is not one of"),
        (["verify", "/no/such/bundle.tar.zst"], "no such bundle"),
        (["inspect", "/no/such/bundle.tar.zst"], "no such bundle"),
        (["import", "/no/such/b.tar.zst", "--target", "http://127.0.0.1:9"], "no such bundle"),
        (["export", "--preset", "vertex-fips"], "--output FILE (or --dry-run"),
        (["export", "--preset", "vertex-fips", "-o", "b.tar.zst", "--full"], "give --state"),
        (["verify", "/"], "/: a directory, not a bundle"),
        (["verify", "/dev/null"], "/dev/null: not a regular file"),
        (["inspect", "b.tar.zst", "--format", "markdown", "--json"], "ask for two outputs"),
        (
            ["import", __file__, "--allow-unsigned", "--target", "docker://reg.example"],
            "; drop docker://)",
        ),
        (
            ["import", __file__, "--allow-unsigned", "--target", "reg.example/edge"],
            "a path goes in basePath (spec)",
        ),
        (
            ["import", __file__, "--allow-unsigned", "--target", "ftp://reg.example"],
            "(expected [http[s]://]HOST[:PORT])",
        ),
        (
            ["import", __file__, "--allow-unsigned", "--target", "reg.example?x=y"],
            "not a registry URL",
        ),
    ],
)
def test_usage_errors_exit_2_in_one_line(
    args: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 2
    assert needle in _one_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        # Cases that stay unreadable for root too (root reads a chmod-0 file anyway).
        (lambda p: p.write_bytes(b"\xff\xfename: x\n"), "cannot read: 'utf-8' codec can't"),
        (lambda p: p.symlink_to(p.parent / "gone.yaml"), "cannot read: No such file"),
    ],
    ids=["not-utf8", "dangling-symlink"],
)
def test_unreadable_spec_is_exit_2(
    make: Any, reason: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    make(spec)
    assert main(["export", str(spec), "--dry-run", "-o", str(tmp_path / "b.tar.zst")]) == 2
    assert _one_line(capsys.readouterr().err).startswith(f"mirror: error: {spec}: {reason}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_unreachable_registry_is_exit_1_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nregistries:\n  - {name: A, kind: oci, url: 'http://127.0.0.1:9'}\n")
    out = tmp_path / "b.tar.zst"
    assert main(["export", str(spec), "-o", str(out)]) == 1
    assert "cannot reach 127.0.0.1:9" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == [spec]


@pytest.mark.parametrize("where", ["first", "after the command"])
def test_debug_shows_the_traceback(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A global flag anywhere before `--`, as docker and zarf take theirs."""
    args = ["verify", str(tmp_path / "x")]
    assert main(["--debug", *args] if where == "first" else [*args, "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("mirror: error: " + args[1] + ": no such bundle\n")


def test_a_missing_choice_is_one_readable_line(capsys: pytest.CaptureFixture[str]) -> None:
    """click lists the choices on lines of their own: they were shown as literal \\n\\t."""
    assert main(["completion"]) == 2
    err = capsys.readouterr().err
    assert err == (
        "mirror: error: Missing argument '{bash|zsh|fish}'. Choose from: bash, zsh, fish "
        "(see 'mirror completion --help')\n"
    )


@pytest.mark.parametrize("flag", ["--quiet", "-q"])
def test_quiet_counts_after_the_command_in_either_spelling(
    flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """README: `--quiet` (or `-q`) anywhere before `--`; `-q` after the command was exit 2."""
    assert main(["verify", str(tmp_path / "x"), flag]) == 2
    assert capsys.readouterr().err == f"mirror: error: {tmp_path / 'x'}: no such bundle\n"


@pytest.mark.parametrize("args", [[], ["cache"], ["registries"]], ids=["mirror", "cache", "reg"])
def test_a_bare_group_prints_its_help_on_stdout(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"Usage: {' '.join(['mirror', *args])} [OPTIONS] COMMAND") and not err


def test_keygen_needs_a_password_without_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MIRROR_KEY_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", open(os.devnull))  # noqa: SIM115
    assert main(["keygen", "--output-dir", str(tmp_path)]) == 2
    assert "MIRROR_KEY_PASSWORD" in _one_line(capsys.readouterr().err)
    monkeypatch.setenv("MIRROR_KEY_PASSWORD", "pw")
    assert main(["keygen", "--output-dir", str(tmp_path), "--name", "k"]) == 0
    assert (tmp_path / "k.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "k.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")


def test_python_dash_m_and_completion(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "mirror", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.startswith("mirror, version")
    env = {**os.environ, "_MIRROR_COMPLETE": "bash_source"}
    script = subprocess.run(
        [sys.executable, "-m", "mirror"], env=env, capture_output=True, text=True, check=True
    ).stdout
    printed = subprocess.run(
        [sys.executable, "-m", "mirror", "completion", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert printed.strip() == script.strip()
    # Source the script in bash and complete as a shell would: the effect, not the text.
    wrapper = tmp_path / "bin" / "mirror"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m mirror "$@"\n')
    wrapper.chmod(0o755)
    drive = (
        'eval "$SCRIPT"; complete -p mirror\n'
        "COMP_WORDS=(mirror exp); COMP_CWORD=1; _mirror_completion mirror\n"
        'echo "words: ${COMPREPLY[*]}"; COMPREPLY=()\n'
        "COMP_WORDS=(mirror import --ta); COMP_CWORD=2; _mirror_completion mirror\n"
        'echo "options: ${COMPREPLY[*]}"\n'
    )
    env = {"PATH": f"{wrapper.parent}:{os.environ['PATH']}", "SCRIPT": script}
    env.update({k: v for k, v in os.environ.items() if k.startswith(("PYTHON", "XDG_", "HOME"))})
    shell = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", drive],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shell.stdout.splitlines() == [
        "complete -o nosort -F _mirror_completion mirror",
        "words: export",
        "options: --target",
    ], shell.stderr


def test_verify_json_has_every_contract_key_on_success_and_failure(
    seeded_registry: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write_spec(
        tmp_path / "spec.yaml", seeded_registry.url, repositories=["images/api-00"], provider=None
    )
    bundle = tmp_path / "b.tar.zst"
    assert main(["export", str(spec), "-o", str(bundle), "--cache-dir", str(tmp_path / "c")]) == 0
    keys = {"ok", "artifacts", "blobs", "bytes", "signer", "fips", "error"}
    capsys.readouterr()
    assert main(["verify", str(bundle), "--json"]) == 3
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert set(doc) >= keys and doc["ok"] is False and "--allow-unsigned" in doc["error"]
    assert len(out.err.strip().splitlines()) == 1
    assert main(["verify", str(bundle), "--json", "--allow-unsigned"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) >= keys and doc["ok"] is True and doc["artifacts"] == 1
    assert doc["signer"] is None and doc["error"] is None
    for args, code in [
        ([str(tmp_path / "none.tar.zst")], 2),
        ([str(bundle), "--key", str(spec)], 2),
    ]:
        assert main(["verify", *args, "--json"]) == code  # refused before the pass: a verdict too
        out = capsys.readouterr()
        doc = json.loads(out.out)
        assert doc["ok"] is False and doc["error"] and out.err.startswith("mirror: error: ")


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["export", "{spec}", "-o", "{tmp}/b.tar.zst", "--json"], 1),  # the registry is down
        (["export", "{spec}", "--json", "--jobs", "abc"], 2),  # refused while parsing
        (["export", "--json", "--bogus"], 2),
        (["images", "{tmp}/none.yaml", "--json"], 2),
        (["inspect", "{tmp}/none.tar.zst", "--json"], 2),
        (["inspect", "{tmp}/none.tar.zst", "--json", "--format", "markdown"], 2),
        (["import", "{tmp}/none.tar.zst", "--target", "127.0.0.1:9", "--json"], 2),
        (["registries", "list", "--scope", "system", "--catalog", "{spec}", "--json"], 2),
        (["cache", "prune", "--max-size", "lots", "--json"], 2),
    ],
    ids=lambda v: " ".join(v[:2]) if isinstance(v, list) else str(v),
)
def test_json_failures_still_print_one_document(
    args: list[str], code: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The contract's "exactly one JSON document on stdout" holds when a command fails:
    a script reading stdout finds the same line stderr has, and the exit code."""
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\nregistries:\n  - {name: A, kind: oci, url: 'http://127.0.0.1:9'}\n")
    argv = [a.format(spec=spec, tmp=tmp_path) for a in args]
    assert main(argv) == code
    out = capsys.readouterr()
    line = _one_line(out.err).removeprefix("mirror: error: ")
    assert json.loads(out.out) == {"ok": False, "error": line, "exitCode": code}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]


def test_json_failure_documents_never_double_or_appear_unasked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """verify's verdict is its failure document (one, not two); without --json, or where
    a command has no --json, stdout stays empty; a secret in the error stays out of both."""
    assert main(["verify", str(tmp_path / "none"), "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)  # one document: a second would not parse
    assert doc["ok"] is False and "artifacts" in doc and "exitCode" not in doc
    for argv in (["inspect", str(tmp_path / "none")], ["keygen", "--json"]):
        assert main(argv) == 2
        assert capsys.readouterr().out == ""
    assert main(["export", "--json", "--jobs", "http://user:hunter2@127.0.0.1:9"]) == 2
    out = capsys.readouterr()  # click quotes the value back; both outputs are redacted
    assert "user:hunter2" not in out.out + out.err and "***@127.0.0.1:9" in out.out
    assert json.loads(out.out)["exitCode"] == 2


def test_an_error_line_escapes_what_a_terminal_would_act_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A tar member named `blobs/ESC[2K ESC[1G OK: ...` put a fake OK line on a reviewer's
    terminal in place of verify's error: only newlines were escaped. C1 controls (U+009B
    starts a sequence alone) and marks that reorder text are escaped too."""
    name = "b\x1b[2K\x1b[1GOK: verified\u009b\u202eSPIF\u202c.tar.zst"
    assert main(["verify", str(tmp_path / name), "--allow-unsigned"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "\\x1b[2K\\x1b[1GOK: verified\\x9b\\u202eSPIF\\u202c.tar.zst" in line
    assert not any(c in line for c in "\x1b\u009b\u202e\u202c")


def test_inspect_and_records_escape_reordering_marks() -> None:
    from mirror.bundle.names import printable

    shown = printable({"name": ["Palette Registry \u202eSPIF\u202c", "caf\u00e9 \u009b"]})
    assert shown == {"name": ["Palette Registry \\u202eSPIF\\u202c", "caf\u00e9 \\x9b"]}
