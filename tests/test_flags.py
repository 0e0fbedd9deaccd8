"""One flag vocabulary for the five scripts: their --help, read as a user reads it (each script run as
a subprocess; no argparse internals), lists every flag that two or more scripts take under one name,
with one help text and one default, except the few whose meaning depends on the script."""
import os
import re
import subprocess
import sys

import pytest

from twostream.protocol import presets

pytestmark = pytest.mark.xdist_group("test_flags")  # one worker builds its module fixtures and compiles

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each command line, under presets.py's name for its part of the table.
COMMANDS = {
    "spatial": ["spatial_train.py"], "temporal": ["temporal_train.py"], "test": ["fuse_test.py"], "demo": ["demo.py"],
    **{command: ["prepare_data.py", command] for command in ("splits", "frames", "flow", "check", "synthetic")},
}
SCRIPT_FILES = ("spatial_train.py", "temporal_train.py", "fuse_test.py", "demo.py", "prepare_data.py")
# Flags whose meaning depends on the script (the help says what each does there); same name everywhere.
SCRIPT_SPECIFIC = {"--workers", "--batch-size", "--overwrite", "--weights", "--dropout", "--arch"}
# Old spellings, by command: demo --threads and --flow, check --splits, flow --batch and --method,
# synthetic --dataset (its layout, not a dataset: now --layout).
RENAMED = {"demo": {"--threads": "--workers", "--flow": "--flow-method"}, "check": {"--splits": "--splits-dir"},
           "flow": {"--batch": "--batch-size", "--method": "--flow-method"}, "synthetic": {"--dataset": "--layout"}}
PRESET_VALUES = re.compile(r"(?:ucf101|hmdb51|synthetic|synthetic_hmdb)(?:, [\w]+)*: ")


def read_help(argv):
    """{flag: its help text} of `argv --help`, one line per flag (a wide terminal)."""
    env = {**os.environ, "COLUMNS": "100000", "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, *argv, "--help"], capture_output=True, text=True, cwd=REPO, env=env,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    options, flag, in_options = {}, None, False
    for line in result.stdout.splitlines():
        if re.fullmatch(r"(options|optional arguments):", line):
            in_options = True
        elif in_options and (match := re.fullmatch(r"  (-\S.*?)(?: {2,}(\S.*))?", line)):
            flag = re.findall(r"--[\w-]+", match[1])[0]
            options[flag] = match[2] or ""
        elif in_options and flag and line.startswith("   "):
            options[flag] = f"{options[flag]} {line.strip()}".strip()
    return options


@pytest.fixture(scope="module")
def helps():
    """{command: {flag: help}} of every script and prepare_data.py command."""
    return {name: read_help(argv) for name, argv in COMMANDS.items()}


def split_default(help):
    """help -> (text, its default or per-dataset values at the end, or "")."""
    match = re.fullmatch(r"(.*?) \((default: .*|" + PRESET_VALUES.pattern + r".*)\)", help)
    return (match[1], match[2]) if match else (help, "")


def script_of(command):
    return "prepare_data" if COMMANDS[command][0] == "prepare_data.py" else command


def shared_flags(helps):
    """{flag: [commands listing it]} for the flags of two or more scripts (prepare_data.py's commands
    are one script)."""
    commands = {}
    for command, options in helps.items():
        for flag in options:
            commands.setdefault(flag, []).append(command)
    return {flag: names for flag, names in commands.items()
            if flag != "--help" and len({script_of(name) for name in names}) > 1}


def test_a_shared_flag_has_one_help_and_one_default_everywhere(helps):
    shared = shared_flags(helps)
    assert {"--dataset", "--workers", "--samples", "--fusion-weights", "--splits-dir", "--flow-method",
            "--batch-size", "--seed", "--shard", "--distribute", "--arch", "--partial-bn"} <= set(shared)
    for flag, commands in shared.items():
        texts = {command: split_default(helps[command][flag]) for command in commands}
        if flag in SCRIPT_SPECIFIC:
            continue
        first = commands[0]
        for command in commands[1:]:
            assert texts[command][0] == texts[first][0], f"{flag}: {command}'s help differs from {first}'s"
            defaults = texts[command][1], texts[first][1]
            if any(default.startswith("default:") for default in defaults):
                assert defaults[0] == defaults[1], f"{flag}: {command}'s default differs from {first}'s"


def test_workers_default_to_every_usable_core_everywhere(helps):
    listing = [command for command, options in helps.items() if "--workers" in options]
    assert sorted(listing) == sorted(COMMANDS.keys() - {"splits"})
    for command in listing:
        assert split_default(helps[command]["--workers"])[1].endswith(f" {presets.CORES}"), command


def test_old_spellings_are_gone(helps):
    for command, renamed in RENAMED.items():
        for old, new in renamed.items():
            assert old not in helps[command] and new in helps[command], f"{command}: {old} -> {new}"


def test_a_renamed_flags_old_name_is_refused_not_taken_as_a_prefix():
    """argparse takes an unambiguous prefix by default: --splits would quietly mean --splits-dir."""
    for command, old in (("check", "--splits"), ("flow", "--batch")):
        result = subprocess.run([sys.executable, *COMMANDS[command], old, "1"], capture_output=True, text=True,
                                cwd=REPO, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
        assert result.returncode == 2 and f"unrecognized arguments: {old} 1" in result.stderr, result.stderr
    result = subprocess.run([sys.executable, "fuse_test.py", "--splits", "x"], capture_output=True, text=True,
                            cwd=REPO, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2 and "unrecognized arguments: --splits x" in result.stderr, result.stderr


def test_every_flag_has_help(helps):
    for command, options in helps.items():
        for flag, help in options.items():
            assert help, f"{' '.join(COMMANDS[command])}: {flag} has no help"


def test_no_script_defines_a_shared_flag_itself():
    from twostream.protocol import flags
    assert SCRIPT_SPECIFIC == set(flags.BY_SCRIPT)
    vocabulary = set(flags.SHARED) | set(flags.BY_SCRIPT)
    for file in SCRIPT_FILES:
        with open(os.path.join(REPO, file)) as source:
            defined = re.findall(r"\b(?:add_argument|add_flag|flag)\((?:[\w.]+, ){0,2}\"(--[\w-]+)\"", source.read())
        assert defined, f"{file}: no flag definitions found (has the pattern gone stale?)"
        assert not vocabulary & set(defined), f"{file} defines {vocabulary & set(defined)} itself: use flags.add"


def test_distribute_refuses_what_fuse_test_cannot_do():
    result = subprocess.run([sys.executable, "fuse_test.py", "--distribute", "multiworker"], capture_output=True,
                            text=True, cwd=REPO, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert result.returncode == 2
    assert "--distribute multiworker" in result.stderr and "Traceback" not in result.stderr


def test_folders_come_from_the_presets_table():
    import prepare_data
    import spatial_train
    args = prepare_data.parse_args(["frames", "--dataset", "hmdb51"])
    assert (args.videos, args.out) == ("data/hmdb51/hmdb51_org", os.path.join("data/hmdb51", "jpegs_256"))
    args = prepare_data.parse_args(["check", "--dataset", "synthetic", "--split", "2"])
    assert (args.data_dir, args.splits_dir, args.split) == ("data/synthetic", "data/synthetic/splits", 2)
    assert prepare_data.parse_args(["splits", "--out", "elsewhere"]).out == "elsewhere"
    assert prepare_data.parse_args(["splits", "--dataset", "synthetic_hmdb"]).layout == "hmdb51"
    args = spatial_train.parse_args(["--dataset", "synthetic"])
    assert args.checkpoint_dir == os.path.join(presets.values("synthetic", "spatial")["checkpoints"], "spatial")


@pytest.mark.parametrize("script, argv, flag", [
    ("temporal_train", ["--epoch-steps", "0"], "--epoch-steps"),
    ("temporal_train", ["--batch-size", "0"], "--batch-size"),
    ("temporal_train", ["--image-size", "8"], "--image-size"),
    ("temporal_train", ["--iterations", "-1"], "--iterations"),
    ("spatial_train", ["--image-size", "74"], "--image-size"),
    ("spatial_train", ["--workers", "0"], "--workers"),
    ("fuse_test", ["--samples", "0"], "--samples"),
    ("demo", ["clip.mp4", "--samples", "0"], "--samples"),
    ("temporal_train", ["--val-groups", "-1"], "--val-groups"),
    ("temporal_train", ["--seed", "-3"], "--seed"),
    ("temporal_train", ["--lr-drops", "100", "-5"], "--lr-drops"),
    ("spatial_train", ["--phase1-iterations", "0"], "--phase1-iterations"),
    ("spatial_train", ["--phase2-lr-drops", "x"], "--phase2-lr-drops"),
    ("spatial_train", ["--arch", "xception", "--image-size", "70"], "--image-size"),
    ("spatial_train", ["--arch", "convnext_tiny", "--image-size", "31"], "--image-size"),
    ("spatial_train", ["--arch", "resnet50"], "--arch"),
    ("spatial_train", ["--arch", "convnext_tiny", "--partial-bn"], "--partial-bn"),
    ("temporal_train", ["--partial-bn"], "--partial-bn"),
])
def test_a_number_below_its_minimum_is_one_line_naming_the_flag(script, argv, flag, capsys):
    """Issue 29: zero or too-small values went on to tracebacks deep in training, testing or the demo."""
    module = __import__(script)
    with pytest.raises(SystemExit) as exit_:
        module.parse_args(argv)
    error = capsys.readouterr().err.splitlines()[-1]
    assert exit_.value.code == 2
    assert f"argument {flag}" in error or f"error: {flag}" in error, error  # argparse's line, or the scripts' rule


def test_arch_and_partial_bn_values():
    """--arch: the paper reproduction's network unless given, each backbone at its smallest crop; --partial-bn
    wherever there are pretrained BatchNorm statistics to keep."""
    import spatial_train
    import temporal_train
    assert spatial_train.parse_args([]).arch == "inception_v3" and not spatial_train.parse_args([]).partial_bn
    assert temporal_train.parse_args([]).arch == "cnn_m_2048"
    for arch in presets.SPATIAL_ARCHS:
        args = spatial_train.parse_args(["--arch", arch, "--image-size", str(presets.MIN_IMAGE_SIZE[arch])])
        assert (args.arch, args.image_size) == (arch, presets.MIN_IMAGE_SIZE[arch])
        if arch not in presets.WITHOUT_BATCHNORM:
            assert spatial_train.parse_args(["--arch", arch, "--partial-bn"]).partial_bn
    assert temporal_train.parse_args(["--arch", "inception_v3", "--weights", "imagenet", "--partial-bn"]).partial_bn
    assert temporal_train.parse_args(["--init", "other.keras", "--partial-bn"]).partial_bn
