"""Copy the main job's results into ``docs/results/`` and the README's generated block.

``python -m validation publish --runs runs`` copies ``runs/REPORT.md``, Table 2's tables and figures, the
convergence table, the replication-configuration table and (when run) the training-seed spread into
``docs/results/``, and rewrites the part of
``README.md`` between ``<!-- results:start -->`` and ``<!-- results:end -->`` from the same files, so the
README's numbers are the report's numbers, never retyped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from convert.contract.provenance import atomic_path, check_outputs, write_text_atomic

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _tag(runs: Path) -> str:
    tags = sorted((runs / "table2").glob("*/table2.json"), key=lambda p: p.stat().st_mtime)
    if not tags:
        raise FileNotFoundError(f"no Table 2 results under {runs / 'table2'}: run the main job first")
    return tags[-1].parent.name


MAKE_TARGETS = {  # the Makefile's spelling of the main job's commands
    "python -m validation reproduce": "make reproduce",
    "python -m validation reproduce --images 2000 --slow-images 200 --horizon-images 500": "make reproduce-small",
    "python -m validation reproduce --beyond": "make reproduce-beyond",
    "python -m validation reproduce --train --slow-images 2000 --horizon-images 2000 --agreement-steps 500 "
    "--agreement all": "make reproduce-full",
}


def _public(command: str) -> str:
    """The command as a user types it: without this machine's --runs/--root folders, as a make target if it is one."""
    words, out, skip = command.split(), [], False
    for w in words:
        if skip:
            skip = False
        elif w in ("--runs", "--root"):
            skip = True
        elif not w.startswith(("--runs=", "--root=")):
            out.append(w)
    text = " ".join(out)
    return MAKE_TARGETS.get(text, text)


def _refresh_report(text: str, results: dict, command: str | None = None) -> str:
    """The report with its claims and paired-test sections rebuilt from ``results`` (table2.json), and its
    command line as a user types it (:func:`_public`)."""
    from validation.paper.table2_report import claims_markdown, paired_markdown

    if command:
        text = text.replace(f"Command: `{command}`", f"Command: `{_public(command)}`")

    for head, nxt, body in (
        ("### The paper's claims at this scale\n", "### Paired tests\n", claims_markdown(results)),
        ("### Paired tests\n", "### Cost per classification\n", paired_markdown(results)),
    ):
        if head in text and nxt in text:
            before, rest = text.split(head, 1)
            _, after = rest.split(nxt, 1)
            text = before + head + "\n" + body + "\n" + nxt + after
    return text


def publish(runs: Path, docs: Path, readme: Path) -> list[Path]:
    """Copy the results and refresh the README block; returns the files written."""
    from validation.harness.agreement import agreement_markdown
    from validation.paper.beyond import markdown as beyond_markdown
    from validation.paper.table2 import PAIRS
    from validation.paper.table2_report import claims_markdown, converged_markdown, markdown

    tag = _tag(runs)
    table2 = runs / "table2" / tag
    docs.mkdir(parents=True, exist_ok=True)
    copies = {
        runs / "REPORT.md": docs / "REPORT.md",
        table2 / "table2.md": docs / "table2.md",
        table2 / "convergence.md": docs / "convergence.md",
        table2 / "horizon-check.md": docs / "horizon-check.md",
        table2 / "fig3_mnist.png": docs / "fig3_mnist.png",
        table2 / "fig4_fashion.png": docs / "fig4_fashion.png",
        runs / "replication-config" / "replication-config.md": docs / "replication-config.md",
        runs / "table1.md": docs / "table1.md",
        runs / "seeds" / "seeds.md": docs / "seeds.md",  # `make reproduce-seeds`, when it was run
        runs / "seeds" / "seeds.json": docs / "seeds.json",
    }
    written = []
    results = json.loads((table2 / "table2.json").read_text())
    report = json.loads((runs / "reproduce.json").read_text())
    copies[runs / "reproduce.json"] = docs / "reproduce.json"  # the stage times --estimate scales
    beyond_json = runs / "beyond" / "beyond.json"
    beyond = json.loads(beyond_json.read_text()) if beyond_json.exists() else None
    deeper = [tuple(n) for n in beyond["config"]["networks"]] if beyond else []
    if beyond:
        copies[runs / "beyond" / "beyond.md"] = docs / "beyond.md"
    diagnosis = _with_headlines(runs, report.get("diagnose", []))
    for d in diagnosis:  # the per-layer pictures and tables
        for name in ("diagnose.png", "diagnose.md"):
            copies[runs / "diagnose" / d["network"] / name] = docs / "diagnose" / d["network"] / name
    for ds, model in (*PAIRS, *deeper):  # the trained networks, so that anyone can rerun the tables from them
        for suffix in (".pt", ".json"):
            copies[runs / "models" / f"{ds}-{model}{suffix}"] = docs / "models" / f"{ds}-{model}{suffix}"
    # every destination is checked before the first is written: a link there (or a FIFO, a device) was written
    # through, into the file it points to (or blocked); each copy is atomic, as every other write
    report_md = runs / "REPORT.md"
    check_outputs(readme, report_md, *(dst for src, dst in copies.items() if src.exists()))
    text = readme.read_text()
    if START not in text or END not in text:  # before anything is copied
        raise ValueError(f"{readme}: no {START} ... {END} block to refresh")
    if report_md.exists():  # Table 2's claims and paired tests as the latest table2.json has them
        write_text_atomic(report_md, _refresh_report(report_md.read_text(), results, report.get("command")))
    for src, dst in copies.items():
        if src.exists() and not (dst.exists() and dst.read_bytes() == src.read_bytes()):
            with atomic_path(dst) as tmp:
                shutil.copyfile(src, tmp)
            written.append(dst)
    cores = report["machine"].get("cpu_count", "?")
    command = _public(report.get("command", "make reproduce"))
    stages = ", ".join(f"{s['stage'].split(' (')[0]} {s['wall_s'] / 60:.1f} min" for s in report["stages"])
    block = "\n".join(
        [
            START,
            f"`{command}`, {cores}-core box, {report['total_s'] / 60:.1f} min "
            f"after set-up ({stages}); git commit `{report.get('git_commit', '?')[:10]}`. Full report: "
            "[docs/results/REPORT.md](docs/results/REPORT.md).",
            "",
            markdown(results),
            converged_markdown(results),
            "The paper's claims, each with the test behind it:",
            "",
            claims_markdown(results),
            "Agreement with Brian2 in the same run:",
            "",
            agreement_markdown(report.get("agreement", [])),
            *([f"Beyond the paper's two networks{_commit(beyond)}:", "", beyond_markdown(beyond)] if beyond else []),
            *(["Where the conversions lose accuracy:", "", _diagnose_block(diagnosis)] if diagnosis else []),
            END,
        ]
    )
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    write_text_atomic(readme, head + block + tail)
    written.append(readme)
    return written


def _commit(results: dict) -> str:
    """`` (git commit `abc`)`` of a results file (its table may come from a later run than the main job's)."""
    commit = results.get("git_commit")
    if not commit:
        return ""
    return f" (git commit `{commit[:10]}`{', with uncommitted changes' if commit.endswith('+dirty') else ''})"


def _diagnose_block(rows: list[dict]) -> str:
    """The diagnosis summary with its picture links pointing at the published copies (the README's folder)."""
    from validation.paper.report import diagnose_markdown

    return diagnose_markdown([{**r, "picture": f"docs/results/{r['picture']}"} for r in rows])


def _with_headlines(runs: Path, rows: list[dict]) -> list[dict]:
    """The main job's diagnosis summaries with :func:`validation.harness.diagnose.headline`'s fields, read from
    each network's diagnose.json where an older run's summary lacks them."""
    from validation.harness.diagnose import headline

    out = []
    for r in rows:
        path = runs / "diagnose" / r["network"] / "diagnose.json"
        if "pattern" not in r and path.exists():
            r = {**r, **headline(json.loads(path.read_text()))}
        out.append(r)
    return out
