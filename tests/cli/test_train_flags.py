"""`lenet-tf train --help` cannot disagree with what runs: every flag's shown default is the value the chosen preset
trains with, for every preset, and a real run records exactly those values."""

import json
import re

import pytest

from lenet_tf.cli.commands import build_parser
from lenet_tf.cli.train import config_from_args
from lenet_tf.training.config import options
from lenet_tf.training.presets import DEFAULT_PRESET, PRESETS


def shown(value) -> str:
    """A value as ``--help`` writes it (independently of the code under test)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def help_defaults(cli, *argv) -> dict[str, str]:
    """Each option's "(default: X)" as printed by ``lenet-tf train ARGV --help``, found by its help text."""
    printed = cli("train", *argv, "--help")
    assert printed.returncode == 0, printed.stderr
    text = "".join(printed.stdout.split())  # argparse wraps lines at spaces and hyphens
    found = {}
    for spec in options():
        match = re.search(re.escape("".join(spec.help.split())) + r"\(default:(\S+?)\)", text)
        assert match, f"{spec.flag_name}: its help and default are not in `train --help`"
        found[spec.name] = match.group(1)
    return found


def configuration(*argv):
    args = build_parser(["train", *argv]).parse_args(["train", *argv])
    return config_from_args(args)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_help_shows_the_value_each_preset_trains_with(preset, cli):
    argv = [] if preset == DEFAULT_PRESET else ["--preset", preset]
    config = configuration(*argv)
    assert help_defaults(cli, *argv) == {spec.name: shown(config.value(spec)) for spec in options()}
    assert help_defaults(cli, f"--preset={preset}") == help_defaults(cli, *argv)


def test_presets_differ_in_help_where_they_differ_in_training(cli):
    """The check above is not vacuous: the robust preset's epochs and batch norm show in its help only."""
    default, robust = help_defaults(cli), help_defaults(cli, "--preset", "robust")
    assert (default["epochs"], robust["epochs"]) == (str(PRESETS["default"]["epochs"]),
                                                     str(PRESETS["robust"]["epochs"]))
    assert (default["batch_norm"], robust["batch_norm"]) == ("off", "on")


@pytest.mark.parametrize("abbreviated", ["--pres", "--ep"])
def test_abbreviated_flags_are_refused_so_that_help_cannot_show_another_presets_defaults(abbreviated, cli):
    """argparse took `--pres robust` as `--preset robust` while the help showed the default preset's values."""
    done = cli("train", abbreviated, "robust" if abbreviated == "--pres" else "3")
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines()[-1] == f"lenet-tf: error: unrecognized arguments: {abbreviated} " + (
        "robust" if abbreviated == "--pres" else "3")


def test_a_run_without_flags_records_what_help_shows(tmp_path, synthetic_dir, cli):
    """The default preset trained for real (only the data and the validation size given): its run.json holds the
    values ``--help`` printed, option by option."""
    out = tmp_path / "m"
    trained = cli("train", "--data-dir", synthetic_dir, "--skip-checksum", "--valid-size", "100", "--no-progress",
                  "--out", out)
    assert trained.returncode == 0, trained.stderr
    run = json.loads((out / "run.json").read_text())
    helped = help_defaults(cli)
    for spec in options():
        if spec.name in ("valid_size", "precision", "kernels"):  # given here; resolved when training starts
            continue
        recorded = run["model"].get(spec.name, spec.default) if spec.model else run["train"][spec.name]
        assert shown(recorded) == helped[spec.name], spec.flag_name
    assert run["train"]["valid_size"] == 100 and run["train"]["precision"] in ("fp32", "bf16")
    assert len(run["history"]) == int(helped["epochs"])
