"""`check` input as users have it (issue 10) and runs that end early (issue 11), through the
real command line against a lab world: a BOM and invisible characters, `Name <addr>` lines,
CSV columns, bad lines reported as invalid where they stand, every output format, and
Ctrl-C / SIGTERM keeping finished work."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smtpprobe.core import addresslist
from smtpprobe.lab.world import DEMO_DOMAINS, Domain, LabWorld, lab_world_in_thread
from smtpprobe.models import InvalidInput

RunCli = Callable[..., subprocess.CompletedProcess[str]]
ROOT = Path(__file__).resolve().parents[2]
SLOW = Domain("slow.test", ((10, "mx.slow.test", "127.0.0.81", "slow_banner"),))


@pytest.fixture(scope="module")
def lab() -> Iterator[LabWorld]:
    with lab_world_in_thread((*DEMO_DOMAINS, SLOW)) as world:
        yield world


def common(lab: LabWorld) -> list[str]:
    host, port = lab.resolver
    return ["--resolver", f"{host}:{port}", "--port", str(lab.port), "--cafile", lab.cafile,
            "--helo", "probe.smtpprobe.test", "--timeout", "3"]


# --- pure parsing -----------------------------------------------------------------------------


def test_bom_invisible_characters_and_display_names() -> None:
    text = ("\ufeffalice@good.test\n# a comment\n\n  Bob Example <bob@good.test>  \n"
            "\"Post, Master\" <post\u200bmaster@good.test>\nnot-an-address\n")
    entries = addresslist.from_text(text)
    assert [(e.line, e.address) for e in entries] == [
        (1, "alice@good.test"), (4, "bob@good.test"), (5, "postmaster@good.test"),
        (6, "not-an-address")]
    assert entries[2].removed == ("U+200B ZERO WIDTH SPACE",)
    parsed = [addresslist.parse_entry(e) for e in entries]
    assert isinstance(parsed[3], InvalidInput) and parsed[3].line == 6
    assert "no '@'" in parsed[3].error


def test_csv_columns_by_name_and_number() -> None:
    text = "\ufeffName;E-Mail;Ort\nAlice;alice@good.test;Köln\nBob;bob@good.test;Bonn\n"
    by_name = addresslist.from_text(text, column="e-mail")
    assert [(e.line, e.address) for e in by_name] == [(2, "alice@good.test"),
                                                       (3, "bob@good.test")]
    by_number = addresslist.from_text(text, column="2")
    assert [e.address for e in by_number] == ["alice@good.test", "bob@good.test"]
    quoted = addresslist.from_text('name,mail\n"Doe, Jane","Jane <jane@good.test>"\n',
                                   column="mail")
    assert [e.address for e in quoted] == ["jane@good.test"]


# --- through the command line -------------------------------------------------------------------


def test_invisible_characters_no_longer_make_a_mailbox_vanish(
        tmp_path: Path, run_cli: RunCli, lab: LabWorld) -> None:
    path = tmp_path / "excel.txt"
    path.write_bytes("\ufeffalice@good.test\r\nbo\u200bb@good.test\r\n".encode())
    done = run_cli("check", "--file", str(path), "--json", *common(lab))
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["address"], r["verdict"]) for r in results] == [
        ("alice@good.test", "accepted"), ("bob@good.test", "accepted")]
    assert "U+200B ZERO WIDTH SPACE" in done.stderr and done.returncode == 0
    # On the wire: the clean addresses only.
    rcpts = [c for c in lab.servers["mx.good.test"].commands if c.startswith("RCPT")]
    assert "RCPT TO:<bob@good.test>" in rcpts
    assert not any("\u200b" in c or "\ufeff" in c for c in rcpts)


def test_a_bad_line_is_reported_where_it_stands(tmp_path: Path, run_cli: RunCli,
                                                lab: LabWorld) -> None:
    path = tmp_path / "list.txt"
    path.write_text("alice@good.test\nthis is no address\nnobody@good.test\n"
                    "Evil <ev\x00il@good.test>\n", encoding="utf-8")
    done = run_cli("check", "--file", str(path), "--json", *common(lab))
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["verdict"] for r in results] == ["accepted", "invalid", "rejected", "invalid"]
    assert results[3]["address"] == "Evil <ev\\x00il@good.test>"  # escaped, never raw
    assert "control character" in results[3]["error"]
    assert not any("ev" in c and "il@" in c for c in lab.servers["mx.good.test"].commands)
    assert results[1]["line"] == 2 and "no '@'" in results[1]["error"]
    assert f"{path}:2" in done.stderr and done.returncode == 1
    # --strict keeps the old behaviour: a usage error before any traffic.
    before = lab.servers["mx.good.test"].connections
    strict = run_cli("check", "--file", str(path), "--strict", *common(lab))
    assert strict.returncode == 2 and f"{path}:2" in strict.stderr
    assert lab.servers["mx.good.test"].connections == before


def test_output_formats(tmp_path: Path, run_cli: RunCli, lab: LabWorld) -> None:
    path = tmp_path / "list.csv"
    path.write_text("name,email\nAlice,alice@good.test\nNobody,nobody@good.test\n"
                    "Full,bob@full.test\n", encoding="utf-8")
    args = ["check", "--file", str(path), "--column", "email", *common(lab)]
    rows = list(csv.DictReader(io.StringIO(run_cli(*args, "--format", "csv").stdout)))
    assert [(r["address"], r["verdict"], r["code"]) for r in rows] == [
        ("alice@good.test", "accepted", "250"), ("nobody@good.test", "rejected", "550"),
        ("bob@full.test", "rejected", "552")]
    assert rows[1]["category"] == "user_unknown" and rows[1]["mx_host"] == "mx.good.test"
    assert [r["line"] for r in rows] == ["2", "3", "4"]
    array = json.loads(run_cli(*args, "--format", "json").stdout)
    assert [d["verdict"] for d in array] == ["accepted", "rejected", "rejected"]
    table = run_cli(*args, "--format", "table")
    text = " ".join(table.stdout.split())
    assert "nobody@good.test rejected 550 5.1.1 user_unknown mx.good.test" in text
    assert "rejected: nobody@good.test, bob@full.test" in text
    german = " ".join(run_cli(*args, "--lang", "de").stdout.split())
    assert "abgelehnt: nobody@good.test, bob@full.test" in german
    # One address and --json: the same one-object-per-line shape as for many.
    one = run_cli("check", "alice@good.test", "--json", *common(lab))
    assert len(one.stdout.splitlines()) == 1 and json.loads(one.stdout)["verdict"] == "accepted"


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_run_keeps_what_was_finished(tmp_path: Path, lab: LabWorld,
                                                    signum: int, code: int) -> None:
    path = tmp_path / "list.txt"
    path.write_text("alice@good.test\nalice@slow.test\nbob@good.test\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMTPPROBE_")}
    child = subprocess.Popen(
        [sys.executable, "-m", "smtpprobe", "check", "--file", str(path), "--json",
         *common(lab), "--timeout", "30"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    time.sleep(2.5)  # the good.test checks are done; slow.test greets after 5 s
    child.send_signal(signum)
    out, err = child.communicate(timeout=30)
    assert child.returncode == code, err
    results = {r["address"]: r for r in map(json.loads, out.splitlines())}
    assert results["alice@good.test"]["verdict"] == "accepted"
    assert results["bob@good.test"]["verdict"] == "accepted"
    assert results["bob@good.test"]["out_of_order"] is True  # after the unfinished one
    assert results["alice@slow.test"]["verdict"] == "interrupted"
    assert err.strip().splitlines()[-1] == "smtpprobe: interrupted: 2 of 3 addresses checked"
    assert "Traceback" not in err


# --- big files: read whole or refused, never cut (issue 11) ---------------------------------------


def test_a_file_past_64_mi_characters_is_read_whole(tmp_path: Path, run_cli: RunCli,
                                                    lab: LabWorld) -> None:
    # The old reader stopped at 64 Mi characters, even mid-address: the last line below would
    # have been lost, or cut into another domain.
    path = tmp_path / "big.txt"
    padding = ("# " + "x" * 98 + "\n") * (66 * (1 << 20) // 100)
    path.write_text(padding + "alice@good.test\n", encoding="utf-8")
    assert path.stat().st_size > 65 * (1 << 20)
    done = run_cli("check", "--file", str(path), "--json", *common(lab), timeout=120)
    [result] = [json.loads(line) for line in done.stdout.splitlines()]
    assert (result["address"], result["verdict"]) == ("alice@good.test", "accepted")


def test_a_file_over_the_limit_is_refused_before_any_traffic(tmp_path: Path, lab: LabWorld,
                                                             monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from smtpprobe.cli.check import _read_address_file
    from smtpprobe.core import addresslist as module
    from smtpprobe.errors import UsageError

    path = tmp_path / "list.txt"
    path.write_text("alice@good.test\n" * 100, encoding="utf-8")
    monkeypatch.setattr(module, "MAX_FILE", 1000)
    with pytest.raises(UsageError, match="larger than"):
        _read_address_file(str(path))
    monkeypatch.setattr(module, "MAX_FILE", 1600)
    assert _read_address_file(str(path)).count("\n") == 100  # exactly at the limit: whole
