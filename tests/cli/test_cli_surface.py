"""The command line as a new user meets it: --version, -h, completion, help that names its
values and exit codes, one name per concept, and the version stamp in JSON and JUnit."""

from __future__ import annotations

import json
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest

from smtpprobe import __version__
from smtpprobe.cli.exits import HELP
from smtpprobe.report.json import stamped

RunCli = Callable[..., subprocess.CompletedProcess[str]]


def test_version(run_cli: RunCli) -> None:
    for flag in ("--version", "-V"):
        done = run_cli(flag)
        assert done.returncode == 0 and done.stdout == f"smtpprobe {__version__}\n"


@pytest.mark.parametrize("command", ["check", "sweep", "relay"])
def test_short_help_names_examples_and_exit_codes(run_cli: RunCli, command: str) -> None:
    long, short = run_cli(command, "--help"), run_cli(command, "-h")
    assert long.returncode == short.returncode == 0
    assert long.stdout == short.stdout
    text = " ".join(long.stdout.replace("│", " ").split())
    assert "Examples:" in text and "Exit codes: 0" in text
    assert " ".join(HELP[command].split()) in text
    assert "[de|en]" in text  # the values --lang takes
    assert "--knowledge" not in text  # for knowledge-base authors only


def test_one_name_per_concept_with_the_short_options_of_swaks(run_cli: RunCli) -> None:
    check = " ".join(run_cli("check", "-h").stdout.split())
    assert "--from" in check and "--mail-from" in check and "-f" in check
    assert "-s" in check and "-p" in check
    relay = " ".join(run_cli("relay", "-h").stdout.split())
    assert "--mail-from" in relay and "-t" in relay and "-f" in relay
    assert "-u" in " ".join(run_cli("sweep", "-h").stdout.split())
    # The alias reaches the same option: a bad sender is refused in its name, before traffic.
    done = run_cli("check", "--from", "not an address", "a@b.example")
    assert done.returncode == 2 and done.stderr.startswith("smtpprobe: error:")


def test_completion_script_and_completions(run_cli: RunCli) -> None:
    script = run_cli("completion", "bash")
    assert script.returncode == 0 and "_SMTPPROBE_COMPLETE" in script.stdout
    done = run_cli(env={"_SMTPPROBE_COMPLETE": "complete_bash", "COMP_WORDS":
                        "smtpprobe check --no-", "COMP_CWORD": "2"})
    assert done.returncode == 0
    assert set(done.stdout.split()) == {"--no-starttls", "--no-pipelining"}
    commands = run_cli(env={"_SMTPPROBE_COMPLETE": "complete_bash", "COMP_WORDS":
                            "smtpprobe sw", "COMP_CWORD": "1"})
    assert commands.stdout.split() == ["sweep"]
    assert run_cli("completion", "tcsh").returncode == 2


def test_json_carries_version_and_time(run_cli: RunCli) -> None:
    done = run_cli("explain", "--json", "550 5.1.1 <a@b.example>: user unknown")
    data: dict[str, Any] = json.loads(done.stdout)
    assert data["schema"] == "smtpprobe.explain/1"
    assert data["smtpprobe_version"] == __version__
    assert len(data["generated_at"]) == 20 and data["generated_at"].endswith("Z")


def test_stamp_follows_the_schema_key() -> None:
    out = stamped({"schema": "x/1", "a": 1})
    assert list(out) == ["schema", "smtpprobe_version", "generated_at", "a"]
    assert stamped({"a": 1}) == {"a": 1}


def test_junit_names_the_version() -> None:
    from smtpprobe.models import PortMode, RelayReport, RelayVerdict
    from smtpprobe.report.junit import relay_junit

    report = RelayReport(host="h", address="127.0.0.1", port=587, mode=PortMode.STARTTLS,
                         verdict=RelayVerdict.PASS, checks=(), tls=None, message_id=None,
                         queue_id=None, user=None, elapsed_ms=1.0)
    root = ET.fromstring(relay_junit(report, "en"))
    props = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert props["smtpprobe_version"] == __version__


def test_a_bare_helo_name_is_warned_about_before_the_run(run_cli: RunCli) -> None:
    # A closed port: the run itself fails fast; the warning comes first, in the language.
    args = ("check", "--server", "127.0.0.1:9", "a@b.test", "--timeout", "1")
    given = run_cli(*args, "--helo", "myhost")
    first = given.stderr.splitlines()[0]
    assert first == ("smtpprobe: --helo 'myhost' is not fully qualified; many servers "
                     "refuse such an EHLO")
    german = run_cli(*args, "--helo", "myhost", "--lang", "de")
    assert "kein vollständiger Name" in german.stderr.splitlines()[0]
    default = run_cli(*args, env={"SMTPPROBE_HELO": ""})
    import socket

    if "." not in socket.gethostname():
        assert "is not fully qualified" in default.stderr and "--helo" in default.stderr
    fine = run_cli(*args, "--helo", "probe.example.org")
    assert "fully qualified" not in fine.stderr
    literal = run_cli(*args, "--helo", "[192.0.2.1]")
    assert "fully qualified" not in literal.stderr
