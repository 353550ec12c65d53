"""The leaderboard: finished trials best first, with the baselines scored the same way, and
the exported winner's test score beside the baselines' on the same split."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from search.suggest import candidate_as_run


@dataclass(frozen=True)
class Row:
    name: str
    family: str
    detail: str
    cv_mean: float | None
    cv_std: float | None
    state: str
    seconds: float | None = None
    note: str = ""
    stages: dict = field(default_factory=dict)  # seconds per stage of the trial
    compile_by_stage: dict = field(default_factory=dict)  # JAX: the "compile" seconds by the stage they fell in
    probe: str | None = None  # the probe its CV score came from (`auto` is resolved on each machine)


def shown_trials(optuna_study) -> list:
    """The study's trials but those begun after the requested count was reached (nothing ran)."""
    return [t for t in optuna_study.get_trials(deepcopy=False) if not t.user_attrs.get("surplus")]


def trial_rows(optuna_study) -> list[Row]:
    rows = []
    retried = {t.system_attrs.get("failed_trial") for t in optuna_study.get_trials(deepcopy=False)}
    for trial in shown_trials(optuna_study):
        attrs = trial.user_attrs
        candidate = attrs.get("candidate", {})
        seconds = sum(attrs.get("seconds", {}).values()) or None
        note = attrs.get("fail_reason", "")
        if trial.state.name == "FAIL" and not note and trial.number in retried:  # Optuna's heartbeat failed it
            note = "its worker stopped answering (heartbeat lost); its config ran again"
        elif trial.state.name == "FAIL" and not note:  # the process stopped before it could store why
            note = "no reason stored (its process stopped before storing one: killed, heartbeat lost, or a full disk)"
        if trial.state.name == "PRUNED" and trial.intermediate_values:
            step = max(trial.intermediate_values)
            note = f"pruned at epoch {step} ({trial.intermediate_values[step]:.4f})"
        rows.append(
            Row(
                stages=attrs.get("seconds", {}),
                compile_by_stage=attrs.get("compile_by_stage", {}),
                name=f"trial {trial.number}",
                family=candidate.get("family", "?"),
                detail=describe(candidate_as_run(candidate, attrs)) + _retried(candidate, attrs),
                cv_mean=trial.value if trial.state.name == "COMPLETE" else None,
                cv_std=attrs.get("score_std"),
                state=trial.state.name.lower(),
                seconds=seconds,
                note=note,
                probe=attrs.get("probe"),
            )
        )
    return rows


# "compile": seconds JAX spent compiling, taken out of the other stages (JAX backend only).
STAGES = ("prepare", "build", "fit", "checkpoints", "encode", "probe", "compile")


def mean_stage_seconds(stages: list[dict]) -> dict:
    """Mean seconds per stage over trials' recorded stage times (empty ones skipped)."""
    timed = [t for t in stages if t]
    if not timed:
        return {}
    return {s: sum(t.get(s, 0.0) for t in timed) / len(timed) for s in STAGES if any(s in t for t in timed)}


def cost_summary(rows) -> str:
    means = mean_stage_seconds([r.stages for r in rows if r.state == "complete"])
    if not means:
        return ""
    total = sum(means.values()) or 1.0
    parts = ", ".join(f"{s} {v:.2f}" for s, v in means.items())
    probe = means.get("probe", 0.0) + means.get("checkpoints", 0.0)
    compiling = f", compiling {100 * means['compile'] / total:.0f}%" if "compile" in means else ""
    compiled_in = mean_stage_seconds([r.compile_by_stage for r in rows if r.state == "complete"])
    if compiled_in:  # which programs the compile seconds went to: the model's or the probe's
        compiling += "; compiled in " + ", ".join(f"{s} {v:.2f}" for s, v in compiled_in.items() if v >= 0.005)
    return (f"Mean seconds per completed trial: {parts} "
            f"(probe and checkpoints {100 * probe / total:.0f}% of the trial{compiling})")


def describe(candidate: dict) -> str:
    if not candidate:
        return ""
    params = candidate["family_params"]
    stack = "-".join(_layer(l) for l in params.get("layers", [])) or "none"
    extra = {k: v for k, v in params.items() if k != "layers"}
    parts = [
        f"code={candidate['code_size']}{params.get('code_activation', '')[:4]}",
        f"stack={stack}",
        *(f"{k}={_short(v)}" for k, v in sorted(extra.items()) if k != "code_activation"),
        "+input" if candidate.get("include_input") else "",
        # the scaling when it is not the default (min-max), as the series space searches it
        f"scale={candidate['scaling']}" if candidate.get("scaling", "minmax") != "minmax" else "",
        f"ep={candidate['training']['epochs']} bs={candidate['training']['batch_size']} "
        f"lr={candidate['training']['learning_rate']:.1e} {candidate['training']['optimizer']}",
    ]
    return " ".join(p for p in parts if p)


def _retried(candidate: dict, attrs: dict) -> str:
    if not attrs.get("retried_batch_size") or not candidate:
        return ""
    return f" (bs={candidate['training']['batch_size']} ran out of memory)"


def _layer(layer: dict) -> str:
    """'64relu' for a dense or recurrent layer, '32k3relu/p' for a pooled conv layer
    ('32k3d2relu/p' dilated by 2)."""
    if "filters" in layer:
        dilated = f"d{layer['dilation']}" if int(layer.get("dilation", 1)) > 1 else ""
        return f"{layer['filters']}k{layer['kernel_size']}{dilated}{layer['activation'][:4]}{'/p' if layer['pool'] else ''}"
    return f"{layer['units']}{layer['activation'][:4]}"


def _short(value):
    return f"{value:.3g}" if isinstance(value, float) else value


def format_leaderboard(rows: list[Row], baselines: dict, metric: str, export: dict | None, top: int = 10,
                       test_uses: list = ()) -> str:
    done = sorted((r for r in rows if r.cv_mean is not None), key=lambda r: -r.cv_mean)
    baseline_rows = [
        Row(f"baseline {name}", name, b.get("detail", ""), b["cv_mean"], b["cv_std"], "baseline")
        for name, b in baselines.items()
    ]
    shown = sorted(done[:top] + baseline_rows, key=lambda r: -r.cv_mean)
    counts = {state: sum(r.state == state for r in rows) for state in ("complete", "pruned", "fail", "running", "waiting")}
    width = max([14, *(len(r.name) for r in shown)])  # "baseline minirocket" keeps the columns aligned
    scores = max(18, len("CV " + metric))  # "CV balanced_accuracy" too
    # A report during a run counts the trials running now; an interrupted one's config waits in the queue.
    pending = "".join(f", {counts[state]} {word}" for state, word in (("running", "running"), ("waiting", "queued"))
                      if counts[state])
    lines = [
        f"Leaderboard ({metric}, {len(rows)} trial{'' if len(rows) == 1 else 's'}: {counts['complete']} complete, "
        f"{counts['pruned']} pruned, {counts['fail']} failed{pending})",
        f"{'rank':>4}  {'name':<{width}} {'family':<10} {'CV ' + metric:>{scores}}  {'sec':>6}  config",
    ]
    for rank, row in enumerate(shown, 1):
        secs = f"{row.seconds:6.1f}" if row.seconds else "      "
        score = f"{row.cv_mean:.4f} ± {row.cv_std:.4f}"
        lines.append(f"{rank:>4}  {row.name:<{width}} {row.family:<10} {score:>{scores}}  {secs}  {row.detail}")
    failed = [r for r in rows if r.state == "fail"]
    for row in failed[:5]:
        lines.append(f"      {row.name:<{width}} failed: {row.note}")
    if len(failed) > 5:
        lines.append(f"      ... and {len(failed) - 5} more failed trials")
    cost = cost_summary(rows)
    if cost:
        lines.append(cost)
    lines.extend(_probes_note(rows, baselines))
    if export:
        test, baselines_test = export["test"], export.get("baselines_test", {})
        used = "used once" if len(test_uses) <= 1 else f"used {len(test_uses)} times, listed below"
        lines.append(
            f"Held-out test ({export['n_test_rows']} rows, {used}): "
            f"winner trial {export['trial']} {metric} {test['score']:.4f} "
            f"[95% CI {test['low']:.4f}, {test['high']:.4f}]"
            + "".join(f"; {name} {b['score']:.4f} [{b['low']:.4f}, {b['high']:.4f}]"
                      for name, b in baselines_test.items())
            + _refit_note(export)
        )
        lines.extend(_held_out_comparison(test, baselines_test))
    if len(test_uses) > 1 or (test_uses and not export):
        lines.append("Uses of the held-out test part (each one is a look at it; only the first was blind):"
                     if len(test_uses) > 1 else  # e.g. another machine's export of a shared study
                     "Held-out test part, used once (by an export this directory does not hold):")
        for use in test_uses:
            lines.append(f"      {use['time']}  trial {use['trial']}{' (best)' if use['best'] else ''}  "
                         f"{use['metric']} {use['score']:.4f} [{use['low']:.4f}, {use['high']:.4f}]  -> {use['export']}"
                         + (" (not there now)" if use.get("export_gone") else ""))
    return "\n".join(lines)


def _probes_note(rows, baselines: dict) -> list[str]:
    """Said when the CV scores came from more than one probe: the space's `auto` probe is
    chosen by each machine's device (a GPU worker joining a CPU study, a Ray cluster whose head
    has no GPU), and probes differ by a few tenths of a point."""
    trials = Counter(r.probe for r in rows if r.cv_mean is not None and r.probe)
    scored_baselines = sorted({b["probe"] for b in baselines.values() if b.get("probe")})
    if len({*trials, *scored_baselines}) <= 1:
        return []
    by_trials = ", ".join(f"{name} {count}" for name, count in trials.most_common())
    return [f"Note: the CV scores come from more than one probe (trials: {by_trials}; baselines: "
            f"{', '.join(scored_baselines) or 'not recorded'}), as `auto` picks one by each machine's device: "
            "compare CV scores across probes with care (the held-out line uses one probe for all)"]


def _held_out_comparison(test: dict, baselines_test: dict) -> list[str]:
    """The winner against each baseline on the test part, in words: the leaderboard's point is
    whether the search beat them. By the paired interval of their difference (the same
    resampled rows); an export made before it was recorded, by the winner's own interval."""
    paired = {name: b["winner_minus"] for name, b in baselines_test.items() if "winner_minus" in b}
    if not paired:
        above = [name for name, b in baselines_test.items() if b["score"] > test["high"]]
        return [f"Note: {' and '.join(above)} features score above the winner's 95% interval on the test part: "
                "the search has not beaten them yet (more trials may)"] if above else []
    lines = ["Winner minus each baseline on the same test rows (paired bootstrap, 95% CI): "
             + "; ".join(f"{name} {d['score']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" for name, d in paired.items())]
    below = [name for name, d in paired.items() if d["high"] < 0]
    if below:
        lines.append(f"Note: {' and '.join(below)} features score above the winner on the test part (their paired "
                     "interval is below 0): the search has not beaten them yet (more trials may)")
    elif all(d["low"] > 0 for d in paired.values()):
        lines.append("The winner scores above every baseline on the test part (each paired interval is above 0)")
    return lines


def _refit_note(export) -> str:
    """Says so when trials saw a subsample and the winner was refit on more rows."""
    fit, seen = export.get("n_fit_rows"), export.get("n_trial_rows")
    return f" (trials on {seen} rows, winner refit on {fit})" if fit and seen and seen < fit else ""
