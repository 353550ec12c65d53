"""`python -m search`: run | join | resume | report | export | replay | spaces.

Everything heavy (TensorFlow, Optuna) is imported inside the commands, so `--help` and the
space validator answer at once. User errors print one line and exit with status 2."""

from __future__ import annotations

import argparse
import os
import sys

EXIT_USAGE = 2
EXIT_MISMATCH = 1

from search.settings import (  # noqa: E402  (light: the defaults live there)
    DEFAULT_TRIALS_PER_PROCESS, KERAS_BACKENDS, OPTION_DEFAULTS, BackendOptions, Budget, StudySpec,
)


class _OneLineErrors(argparse.ArgumentParser):
    """Usage mistakes end in one line and exit status 2, like every other bad input (the
    subcommand parsers are made with this class too)."""

    def error(self, message):
        self.exit(2, f"error: {message.removeprefix('argument ')} (see {self.prog} --help)\n")


def _path(text: str) -> str:
    """A path argument: '~' expanded (a shell leaves it in --flag=~/x); an empty one (an unset
    shell variable) is refused rather than taken as the current or a default directory."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path (an unset shell variable?)")
    return os.path.expanduser(text)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineErrors(
        prog="python -m search",
        description="Search autoencoder architectures scored by a downstream probe.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="start (or continue) a search")
    run.add_argument(
        "--data", default=StudySpec.data, type=_path,
        help="digits, fashion-mnist[:n=N,seed=S], insurance[:n=N,seed=S], "
             "ucr:NAME (a UCR/UEA dataset bundled with aeon), "
             "or a .csv/.npy/.npz file (default: %(default)s)",
    )
    run.add_argument("--data-dir", default=None, type=_path, help="where fashion-mnist's IDX files are (default: Debian's path)")
    run.add_argument("--target", default=None, help="label column (CSV name, NPY index, NPZ key)")
    run.add_argument("--space", default="default", type=_path, help="a shipped space name or a YAML file (default: default)")
    run.add_argument("--scale", type=float, default=1.0, help="shrink epochs, units and filters by this factor (0, 1]")
    run.add_argument("--trials", type=int, default=Budget.trials, help="finished trials to reach (default: %(default)s)")
    run.add_argument("--timeout", type=float, default=Budget.timeout,
                     help="stop starting trials SECONDS after the search begins (after the baselines are scored; "
                          "running trials finish)")
    run.add_argument("--backend", default="optuna", help="optuna (default), ray or kerastuner")
    run.add_argument("--workers", type=int, default=BackendOptions.workers, help="trials at once: processes (optuna) or concurrent trials (ray) (default: %(default)s)")
    # Backend options default to None here, so that a flag typed for another backend is refused
    # even at its default value (as search.run and EncoderSearch do); the Options types hold them.
    run.add_argument("--gpus", help=f"optuna workers' GPUs, round-robin: auto, none or ids like 0,1 (default: {OPTION_DEFAULTS['gpus']})")
    run.add_argument("--address", default=OPTION_DEFAULTS["address"], help="ray: join this cluster (auto: the running one); default: start Ray here")
    run.add_argument("--cpus-per-trial", type=float, help=f"ray: CPUs reserved per trial (default: {OPTION_DEFAULTS['cpus_per_trial']})")
    run.add_argument("--gpus-per-trial", type=float, help=f"ray: GPUs per trial, fractions share one (default: {OPTION_DEFAULTS['gpus_per_trial']})")
    run.add_argument("--algorithm", help=f"kerastuner: random, bayesian or hyperband (default: {OPTION_DEFAULTS['algorithm']})")
    run.add_argument("--max-failures", type=int, default=Budget.max_failures, help="stop after this many failed trials in a row (default: %(default)s)")
    run.add_argument("--fresh-process", type=int, nargs="?", const=1, default=None, metavar="K",
                     help="optuna: run trials in a child process replaced every K trials, which bounds the memory "
                          f"and slowdown TensorFlow accumulates (default: {DEFAULT_TRIALS_PER_PROCESS}; the flag alone: 1, a new process per "
                          "trial; 0: every trial in the worker itself)")
    run.add_argument("--storage", default=OPTION_DEFAULTS["storage"], metavar="URL",
                     help="optuna: keep the trials in a storage other machines can join: postgresql://USER@HOST/DB "
                          "(password from $SEARCH_STORAGE_PASSWORD, $PGPASSWORD or ~/.pgpass) or journal:PATH on "
                          "a shared filesystem (default: the study's own SQLite file)")
    run.add_argument("--keras-backend", default=None, choices=KERAS_BACKENDS,
                     help="Keras backend for the models (default: $KERAS_BACKEND, else tensorflow)")
    run.add_argument("--metric", default=None, help="auto|accuracy|roc_auc|balanced_accuracy|f1_macro (default: the space's, auto)")
    run.add_argument("--cv", type=int, default=None, metavar="FOLDS",
                     help="the probe's stratified cross-validation folds (default: the space's probe.cv, 5)")
    run.add_argument("--seed", type=int, default=StudySpec.seed, help="seeds the split, the sampler and each trial (default: %(default)s)")
    run.add_argument("--test-size", type=float, default=StudySpec.test_size, help="held-out fraction (default: %(default)s)")
    run.add_argument("--subsample", type=int, default=None,
                     help="trials train and score on this many rows of the search part (stratified); "
                          "the export refits the winner on all of it (default: all rows)")
    run.add_argument("--study-dir", default=None, type=_path, help="study directory (default: studies/DATA-TIME)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    join = commands.add_parser("join", help="add a worker on this machine to a study in a shared storage")
    join.add_argument("storage", metavar="URL", help="the study's storage (as given to run --storage)")
    join.add_argument("--study", required=True, help="the study's name in the storage (its study directory's name)")
    join.add_argument("--data", default=None, type=_path,
                      help="this machine's copy of the study's data file (in-memory data: its data.npz); "
                           "default: the path the study recorded")
    join.add_argument("--study-dir", default=None, type=_path, help="this worker's local directory (default: studies/NAME-join-HOST)")
    join.add_argument("--no-progress", action="store_true")

    resume = commands.add_parser("resume", help="continue a stopped study to its requested trial count",
                                 description="Continues a study to the trial count it was given. For more "
                                             "trials, run `run --trials N --study-dir DIR` with its settings.")
    resume.add_argument("study_dir", type=_path, help="the study directory")
    resume.add_argument("--data", type=_path, help="the study's data file where it is now, if it moved (same contents)")
    resume.add_argument("--no-progress", action="store_true")

    report = commands.add_parser("report", help="print the leaderboard of a study, or write an HTML report")
    report.add_argument("study_dir", type=_path, help="the study directory (read only)")
    report.add_argument("--top", type=int, default=10,
                        help="trials shown in the leaderboard, also the HTML one (default: 10)")
    report.add_argument("--html", action="store_true", help="write one self-contained HTML file with plots")
    report.add_argument("-o", "--out", default=None, type=_path,
                        help="HTML file (default: STUDY/report.html); implies --html")

    export = commands.add_parser("export", help="refit and export the best (or a given) trial")
    export.add_argument("study_dir", type=_path, help="the study directory")
    export.add_argument("--trial", type=int, default=None,
                        help="a completed trial's number (default: the best; another goes to STUDY/export-trial-N)")
    export.add_argument("-o", "--out", default=None, type=_path,
                        help="export directory (default: STUDY/export; with --trial, STUDY/export-trial-N)")

    replay = commands.add_parser("replay", help="re-score a completed trial and compare with its stored score")
    replay.add_argument("study_dir", type=_path, help="the study directory (read only)")
    replay.add_argument("--trial", type=int, required=True, help="the completed trial's number")
    replay.add_argument("--tolerance", type=float, default=0.5, help="allowed difference in points (default: 0.5)")

    spaces = commands.add_parser("spaces", help="list the shipped spaces, or validate a space file")
    spaces.add_argument("path", nargs="?", type=_path, help="a space file to validate")

    worker = commands.add_parser("_worker")  # internal: one extra worker process of a study
    worker.add_argument("study_dir")
    worker.add_argument("--index", type=int, required=True)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if getattr(args, "keras_backend", None):  # before anything imports Keras; workers inherit it
        os.environ["KERAS_BACKEND"] = args.keras_backend
    from encoderkit.errors import EncoderkitError
    from search import interrupts
    from search.errors import SETTINGS_NAMED_ENV, SearchError, settings_as_flags

    # (a worker process names settings as the run that started it: from Python, as keywords)
    as_flags_here = args.command != "_worker" or os.environ.get(SETTINGS_NAMED_ENV) != "keywords"
    try:
        from search.faults import check_environment

        check_environment()
        with interrupts.sigterm_like_ctrl_c(), settings_as_flags(as_flags_here):
            return COMMANDS[args.command](args) or 0
    except (SearchError, EncoderkitError) as exc:
        result = getattr(exc, "result", None)  # a search that had to stop (FatalSearchError): what it stored
        if result is not None:
            print(result.leaderboard)
        print(f"error: {as_flags(str(exc), args)}", file=sys.stderr)
        return getattr(exc, "exit_status", EXIT_USAGE)
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would raise again
        return 0
    except KeyboardInterrupt as exc:
        result = getattr(exc, "result", None)  # search.errors.Interrupted carries the leaderboard
        if result is not None:
            print(result.leaderboard)
            from search.errors import suggested_command

            print(f"interrupted; continue with: {suggested_command('resume', result.study_dir)}", file=sys.stderr)
        else:
            print("interrupted", file=sys.stderr)
        return interrupts.exit_status()  # 130 after Ctrl-C, 143 after SIGTERM
    except Exception as exc:
        from search.errors import is_disk_full

        if is_disk_full(exc):  # where no command named its study: what and where, in one line
            said = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            print(f"error: no space left on disk ({said})", file=sys.stderr)
            return 1
        if not interrupts.is_interrupt(exc):  # a library's own error after a second Ctrl-C is that Ctrl-C
            raise
        print("interrupted", file=sys.stderr)
        return interrupts.exit_status()


def as_flags(message: str, args) -> str:
    """The engine's errors name Python parameters (`workers: ...`); on the command line the
    same setting is a flag of the command (`--workers: ...`). A message that starts with what
    the user typed (a file or study directory named `target` or `trials`) stays as it is."""
    import re

    match = re.match(r"([a-z_]+)(?=[ :=])", message)
    if match is None:
        return message
    typed = {os.fspath(value) for value in vars(args).values() if isinstance(value, (str, os.PathLike))}
    flag = _FLAGS.get(args.command, {}).get(match.group(1))
    return flag + message[match.end():] if flag and match.group(1) not in typed else message


def _flags_by_parameter(parser) -> dict:
    """Each command's {parameter: its flag} (positional arguments are not flags)."""
    return {
        command: {action.dest: max(action.option_strings, key=len)
                  for action in sub._actions if action.option_strings and action.dest != "help"}
        for command, sub in parser._subparsers._group_actions[0].choices.items()
    }


def cmd_run(args):
    from search import engine
    from search.settings import option_keys

    _quiet_libraries()
    backend_options = {key: getattr(args, key) for key in option_keys() - {"workers"}}  # None: not typed
    result = engine.run(
        args.data, target=args.target, data_dir=args.data_dir, space=args.space, scale=args.scale, trials=args.trials, timeout=args.timeout,
        backend=args.backend, workers=args.workers, max_failures=args.max_failures, **backend_options, metric=args.metric,
        cv=args.cv, seed=args.seed, test_size=args.test_size, subsample=args.subsample, study_dir=args.study_dir,
        progress=not args.no_progress,
    )
    _print_result(result)
    _warn_password_in_argv(args.storage)  # after the work: an error stays one line


def cmd_join(args):
    from search.join import join, summary

    _quiet_libraries()
    done = join(args.storage, args.study, data=args.data, study_dir=args.study_dir, progress=not args.no_progress)
    print(summary(done))
    _warn_password_in_argv(args.storage)


def _warn_password_in_argv(url):
    """A password on the command line is visible to every user of the machine (`ps`)."""
    from search.storage import has_password

    if has_password(url):
        print("note: the password in this URL is visible to other users of this machine (ps); "
              "prefer $SEARCH_STORAGE_PASSWORD or ~/.pgpass", file=sys.stderr)


def cmd_resume(args):
    from search import engine

    _quiet_libraries()
    _print_result(engine.resume(args.study_dir, data=args.data, progress=not args.no_progress))


def cmd_report(args):
    from search.errors import SettingsError
    from search.results import result_of
    from search.study import open_study

    if args.top < 1:
        raise SettingsError(f"top: must be at least 1, got {args.top}")
    if args.html or args.out is not None:  # -o alone was ignored: no file, no word
        from search.report import write_html

        _quiet_libraries()
        print(f"report: {write_html(args.study_dir, args.out, top=args.top)}")
        return
    from search.storage import load_readonly

    study = open_study(args.study_dir)
    print(result_of(study, optuna_study=load_readonly(study), top=args.top).leaderboard)


def cmd_export(args):
    from search import refit

    _quiet_libraries()
    from search.study import open_study

    out = refit.export_destination(open_study(args.study_dir), args.trial, args.out)
    before = _export_in(out)
    manifest = refit.export_best(args.study_dir, trial=args.trial, out=args.out)
    test = manifest["test"]
    print(f"exported trial {manifest['trial']} to {out}: test {manifest['metric']} {test['score']:.4f}")
    same = ("split_hash", "trial", "candidate")  # a copied study's export names another path, yet is the same
    if before and any(before.get(key) != manifest[key] for key in same):
        # -o over an export is allowed (a deployment's "current" folder); whose it was is said
        old = before.get("test") if isinstance(before.get("test"), dict) else {}
        score = f", test {before.get('metric')} {old['score']:.4f}" if isinstance(old.get("score"), float) else ""
        print(f"(it replaced trial {before.get('trial')} of study {before.get('study')}{score})")


def _export_in(folder) -> dict | None:
    """The manifest of the export in `folder`, or None."""
    from encoderkit.errors import ExportError
    from encoderkit.export import read_manifest

    try:
        return read_manifest(folder) if folder.is_dir() else None
    except ExportError:
        return None


def cmd_replay(args):
    from search import refit
    from search.errors import SettingsError

    if not args.tolerance >= 0:  # NaN too: no difference would ever match it
        raise SettingsError(f"tolerance: must be a number of points, 0 or more, got {args.tolerance}")
    _quiet_libraries()
    found = refit.replay(args.study_dir, args.trial)
    points = 100 * abs(found["replayed"] - found["stored"])
    verdict = "matches" if points <= args.tolerance else "does NOT match"
    print(f"trial {found['trial']}: stored CV {found['metric']} {found['stored']:.4f}, replayed "
          f"{found['replayed']:.4f}: {verdict} (difference {points:.2f} points, tolerance {args.tolerance})")
    return 0 if points <= args.tolerance else EXIT_MISMATCH


def cmd_spaces(args):
    from search.space import builtin_spaces, load_space

    if args.path:
        space = load_space(args.path)
        count = len(space.families)
        print(f"{space.source}: ok ({count} famil{'ies' if count != 1 else 'y'}: {', '.join(space.family_names)}"
              f"{_start_note(space)})")
        return
    for name, path in builtin_spaces().items():
        space = load_space(str(path))
        print(f"{name:<12} {', '.join(space.family_names)}{_start_note(space)}")


def _start_note(space) -> str:
    count = len(space.start)
    return f"; {count} start point{'s' if count != 1 else ''}" if count else ""


def cmd_worker(args):
    from search.backends.optuna_backend import optimize
    from search import devices
    from search.settings import OptunaOptions
    from search.study import open_study
    from search.trial_process import PARENT_ENV, die_with, prepare_for_trials

    die_with(int(os.environ[PARENT_ENV]))  # the driver that started this worker
    _quiet_libraries()
    study = open_study(args.study_dir)
    options = OptunaOptions.from_manifest(study.manifest)
    prepare_for_trials(options.fresh_process, devices.cores_per_worker(options.workers))
    optimize(study, study.problem(), study.space(), worker=args.index)


def _print_result(result):
    print(result.leaderboard)
    if result.export_dir:
        print(f"export: {result.export_dir}  (load with: encoderkit.load_encoder({str(result.export_dir)!r}))")


def _quiet_libraries():
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


_FLAGS = _flags_by_parameter(build_parser())

COMMANDS = {
    "run": cmd_run,
    "join": cmd_join,
    "resume": cmd_resume,
    "report": cmd_report,
    "export": cmd_export,
    "replay": cmd_replay,
    "spaces": cmd_spaces,
    "_worker": cmd_worker,
}
