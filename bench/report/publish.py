"""`bench publish`: copies run records into a published set, a results folder committed to git
(results/published/<name>/) whose manifest names each file's sha256. Runs are lost with the machine
that made them (results/ is not in git); a published set keeps the README's numbers with the
records they came from, so `bench table --results-dir results/published/<name>` re-tables them on
any clone and a later machine's records can be checked against them number for number."""
from __future__ import annotations

import json
from pathlib import Path

from bench.core.curves import judged
from bench.core.errors import BenchError
from bench.core.files import atomic_write_bytes, atomic_write_text
from bench.core.optim import recipe_label, recipes_of
from bench.core.records import MANIFEST, file_sha256, published_files, published_root, record_files
from bench.report.tables import selected_records

# where and when a record was made, not what it measured: a record re-made elsewhere that differs
# only here has the same numbers, and the published one is kept
RAN_WHERE = ("timings", "git_commit", "placement", "versions", "pinning")


def publish(source: Path, target: Path, filters: dict | None = None, replace: bool = False,
            pseudo_only: bool = False) -> list[str]:
    """Copies the run records of `source` that match `filters` (as `bench table` selects them: a
    set matches any of its values), their control records and the pseudo-mask quality records of
    their datasets and of the dataset the filters name into `target`; one line per file. With
    `pseudo_only`, the quality records alone (`bench pseudo report` re-made without the runs). A file
    that is published with other numbers stops everything before a byte is written, unless
    `replace`. The manifest is written before the copies and again after them: a publish killed
    between leaves files the manifest does not list, which every reader of the set refuses by name,
    and a results/ folder still leaves the set out."""
    source, target = Path(source), Path(target)
    if published_root(source) is not None:
        raise BenchError(f"{source} is a published set; fix: publish from the folder the runs wrote (--results-dir results)")
    chosen = [] if pseudo_only else [path for path, _ in selected_records(source, filters)]
    files = chosen + [c for p in chosen for c in [p.with_name("control_" + p.name)] if c.is_file()]
    named = (filters or {}).get("dataset")
    files += _quality_records(source, {p.relative_to(source).parts[0] for p in chosen}, named, pseudo_only)
    if not files and pseudo_only:
        raise BenchError(f"no pseudo-mask quality records of {named or 'any dataset'} under {source}; "
                         f"fix: run `bench pseudo report` first, or check --dataset")
    if not files:
        raise BenchError(f"no run records under {source} match; fix: check the filters, or run the cells first")
    manifest = published_files(target) if (target / MANIFEST).is_file() else {}
    lines, todo = [], []
    for path in files:
        rel = path.relative_to(source).as_posix()
        verdict = _against_published(path, target / rel, replace)
        lines.append(f"{verdict:<9} {rel}")
        if verdict != "kept":
            todo.append((path, rel))
    _write_manifest(target, manifest)  # first: a publish killed while copying leaves a set that says so, not loose records
    for path, rel in todo:
        atomic_write_bytes(target / rel, path.read_bytes())
        manifest[rel] = file_sha256(target / rel)
    _write_manifest(target, manifest)
    return lines


def _quality_records(source: Path, datasets: set[str], named: str | None, every: bool) -> list[Path]:
    """The pseudo-mask quality records (<dataset>/pseudo-labels/) of `datasets` and of the dataset
    the filters name; `every`: of every dataset when none is named."""
    wanted = datasets | ({named} if named else set())
    return [p for p in record_files(source) if p.parent.name == "pseudo-labels"
            and ((every and not named) or p.relative_to(source).parts[0] in wanted)]


def _write_manifest(target: Path, files: dict[str, str]) -> None:
    atomic_write_text(target / MANIFEST, json.dumps({"manifest_version": 1, "files": dict(sorted(files.items()))},
                                                    indent=1) + "\n")


def _differing_fields(a: dict, b: dict) -> list[str]:
    """What two records of one cell measured differently (where and when they ran left out; their
    recipes as `recipes_of` reads them, so a record made before records named them is not told
    apart from its re-run for that alone; their fits' verdicts as the current rule judges their
    curves, as every table reads them: a verdict stored under an older rule is not a difference)."""
    a, b = ({**r, "fit": judged(r["fit"])} if isinstance(r.get("fit"), dict) else r for r in (a, b))
    differ = {k for k in set(a) | set(b) if k not in RAN_WHERE and a.get(k) != b.get(k)}
    if recipes_of(a.get("recipes"), a.get("pinning")) == recipes_of(b.get("recipes"), b.get("pinning")):
        differ.discard("recipes")
    return sorted(differ)


def _cpu(record: dict) -> str:
    """The CPU that trained the record's fit (else that evaluated it), by family and model."""
    pins = record.get("pinning") or {}
    cpu = next((p["cpu"] for p in (pins.get("fit"), pins.get("eval")) if isinstance(p, dict) and p.get("cpu")), {})
    return f"family {cpu['family']} model {cpu['model']} ({cpu.get('name', '?')})" if "family" in cpu else "an unrecorded CPU"


def against_published_sets(results_dir: Path, paths: list[Path]) -> list[str]:
    """One line per published set under `results_dir`/published holding some of these records (the
    same cell: the same path in the set): all equal number for number, or how many differ, in what,
    and why: a set published under another recipe (`recipes_of`) holds other fits by design;
    under the same recipe, CPUs of both vendors train alike (README, "Across vendors"), so a
    difference between two CPU models is a finding to report, and on the same model it means the run
    computed something else (the code, a cache or a setting)."""
    results_dir = Path(results_dir).resolve()
    rels = [Path(p).resolve().relative_to(results_dir) for p in paths]
    lines = []
    for root in sorted(m.parent for m in (results_dir / "published").glob(f"*/{MANIFEST}")):
        pairs = [(json.loads((results_dir / r).read_text()), json.loads((root / r).read_text()), r)
                 for r in rels if (root / r).is_file()]
        if not pairs:
            continue
        differ = [(a, b, r, fields) for a, b, r in pairs if (fields := _differing_fields(a, b))]
        if not differ:
            lines.append(f"equal to the published set {root}: {len(pairs)} of these records, number for number")
            continue
        a, b, rel, _ = differ[0]
        fields = sorted({f for *_, some in differ for f in some})
        scores = f"; {rel}: mIoU {b['miou']:.2f} published, {a['miou']:.2f} here" if "miou" in a and "miou" in b else ""
        here, there = _cpu(a), _cpu(b)
        recipes = [recipes_of(r.get("recipes"), r.get("pinning")) for r in (a, b)]
        if None not in recipes and recipes[0] != recipes[1]:
            why = (f"published under the {recipe_label(recipes[1])} recipe, run here under {recipe_label(recipes[0])}: "
                   f"other fits by design, not comparable number for number (README, \"Across vendors\")")
        elif here != there:
            why = (f"published from {there}, run here on {here}: the same code did not train alike on these two "
                   f"CPU models (README, \"Across vendors\"): a finding, for a note")
        else:
            why = f"both on {here}: this run computed something else (the code, a cache or a setting changed)"
        lines.append(f"{len(differ)} of {len(pairs)} records differ from the published set {root} "
                     f"(in {', '.join(fields[:4])}{scores}): {why}")
    return lines


def _against_published(new: Path, old: Path, replace: bool) -> str:
    """'added', 'kept' (published already, the same numbers), 'replaced' (with --replace); stops on
    other numbers, naming both files and what differs."""
    if not old.is_file():
        return "added"
    a, b = json.loads(new.read_text()), json.loads(old.read_text())
    differ = _differing_fields(a, b)
    if not differ:
        return "kept"
    if replace:
        return "replaced"
    scores = f" (mIoU {b['miou']:.2f} published, {a['miou']:.2f} here)" if "miou" in differ else ""
    raise BenchError(f"{new} differs from the published {old} in {', '.join(differ[:4])}{scores}; nothing was published; "
                     f"fix: find out why the numbers moved, or `bench publish --replace` to publish the new ones")
