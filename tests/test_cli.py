"""The ``instructedit`` command line: edits write the image with its record, bad input exits 2 with one
``error: ...`` line and no traceback, ``methods`` lists the registry, every command has ``--help``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import typer.main
from PIL import Image
from test_bad_input import BAD_FILES, write_bad_file  # the same bad files as the API tests
from typer.testing import CliRunner

from instructedit import Editor, EditRecord, EditRequest
from instructedit.cli import app
from instructedit.inputs import read_metadata
from instructedit.methods import available_methods

runner = CliRunner()


@pytest.fixture(scope="module")
def t2i(tiny_pipeline_dir) -> str:
    return tiny_pipeline_dir("t2i")


@pytest.fixture(scope="module")
def ip2p(tiny_pipeline_dir) -> str:
    return tiny_pipeline_dir("ip2p")


@pytest.fixture(scope="module")
def files(tmp_path_factory, test_image) -> dict[str, Path]:
    """Input files for the CLI: a 32x32 image, a 45x67 image, masks, bad files, a folder that is no model."""
    folder = tmp_path_factory.mktemp("cli-inputs")
    paths = {"image": folder / "square.png", "odd": folder / "odd.png", "mask": folder / "mask.png",
             "black_mask": folder / "black.png", "wrong_mask": folder / "wrong-size-mask.png",
             "not_a_model": folder / "not-a-model"}
    test_image.save(paths["image"])
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (67, 45, 3), dtype=np.uint8)).save(paths["odd"])
    mask = np.zeros((32, 32), dtype=np.uint8)
    mask[8:20, 10:22] = 255
    Image.fromarray(mask).save(paths["mask"])
    Image.new("L", (32, 32), 0).save(paths["black_mask"])
    Image.new("L", (64, 48), 255).save(paths["wrong_mask"])
    paths["not_a_model"].mkdir()
    (paths["not_a_model"] / "README.txt").write_text("weights go here")
    for kind in BAD_FILES:
        paths[kind], _ = write_bad_file(folder, kind)
    return paths


def _invoke(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def _sdedit_args(files, t2i, out: Path, *extra: str | Path) -> list[str | Path]:
    return ["edit", files["image"], "--method", "sdedit", "--target", "a red square", "--model", t2i,
            "--steps", "2", "--no-progress", "-o", out, *extra]


def assert_cli_error(result, *fragments: str) -> str:
    """Exit code 2, nothing on stdout, exactly one ``error: ...`` line on stderr with every fragment, and no
    traceback. Returns the error line."""
    context = f"exit={result.exit_code} exception={result.exception!r}\nstderr={result.stderr}"
    assert result.exit_code == 2, context
    assert isinstance(result.exception, SystemExit), context  # not an uncaught exception
    assert "Traceback" not in result.stderr, context
    assert result.stdout == "", result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, context
    assert errors[0] == result.stderr.strip().splitlines()[-1], context  # the error is the last thing said
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


# ----------------------------------------------------------------------------------------------------------
# Successful edits


def test_edit_writes_the_png_with_its_record(files, t2i, tmp_path):
    out = tmp_path / "nested" / "edited.png"  # parent folders are created
    result = _invoke(*_sdedit_args(
        files, t2i, out, "--source", "a square", "--strength", "0.5", "--guidance", "3",
        "--param", "scheduler=euler", "--param", "eta=0.0", "--seed", "7",
    ))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith(f"wrote {out} (sdedit,"), result.stdout
    with Image.open(out) as written:
        assert (written.format, written.mode, written.size) == ("PNG", "RGB", (32, 32))
        pixels = np.asarray(written)
    data = json.loads(read_metadata(out)["instructedit"])
    assert data["method"] == "sdedit" and data["seed"] == 7 and data["model"] == t2i
    assert data["params"] == {"strength": 0.5, "num_inference_steps": 2, "guidance_scale": 3.0, "eta": 0.0,
                              "scheduler": "euler"}
    assert (data["source"], data["target"], data["image_size"]) == ("a square", "a red square", [32, 32])
    record = EditRecord.from_dict(data)
    assert record.unet_calls == 1  # int(2 * 0.5) = 1 step
    # The CLI is a thin layer: the API given the recorded request makes the same pixels.
    api = Editor(device="cpu").edit(EditRequest(
        image=str(files["image"]), source=record.source, target=record.target, method=record.method,
        model=record.model, params=record.params, seed=record.seed,
    ))
    np.testing.assert_array_equal(np.asarray(api.image), pixels)


def test_diffedit_save_mask_writes_the_produced_mask_at_image_size(files, t2i, tmp_path):
    out, mask = tmp_path / "out.png", tmp_path / "masks" / "mask.png"
    result = _invoke(
        "edit", files["odd"], "--method", "diffedit", "--source", "noise", "--target", "a red square",
        "--model", t2i, "--steps", "2", "--strength", "0.5", "--param", "num_maps_per_mask=2",
        "--param", " mask_smoothing = 1 ", "--no-progress", "-o", out, "--save-mask", mask,
    )
    assert result.exit_code == 0, result.stderr
    with Image.open(out) as edited, Image.open(mask) as saved:
        assert edited.size == (45, 67)
        assert (saved.mode, saved.size) == ("L", (45, 67))
        assert set(np.unique(np.asarray(saved))) <= {0, 255}
    data = json.loads(read_metadata(mask)["instructedit"])
    assert data == json.loads(read_metadata(out)["instructedit"])
    assert data["mask_source"] == "produced"
    # --strength is DiffEdit's inpaint_strength; --param values are parsed as JSON (ints stay ints).
    assert data["params"]["inpaint_strength"] == 0.5
    assert data["params"]["num_maps_per_mask"] == 2 and isinstance(data["params"]["num_maps_per_mask"], int)
    assert data["params"]["mask_smoothing"] == 1.0


def test_user_mask_and_ip2p_options(files, ip2p, tmp_path):
    out, saved_mask = tmp_path / "out.png", tmp_path / "used-mask.png"
    result = _invoke("edit", files["image"], "make the square blue", "--model", ip2p, "--mask", files["mask"],
                     "--steps", "2", "--image-guidance", "2.5", "--param", "scheduler=ddim", "--no-progress",
                     "-o", out, "--save-mask", saved_mask)
    assert result.exit_code == 0, result.stderr
    data = json.loads(read_metadata(out)["instructedit"])
    assert data["method"] == "ip2p" and data["instruction"] == "make the square blue"
    assert data["params"]["image_guidance_scale"] == 2.5 and data["params"]["scheduler"] == "ddim"
    assert data["mask_source"] == "user"
    with Image.open(saved_mask) as written, Image.open(files["mask"]) as given:
        np.testing.assert_array_equal(np.asarray(written), np.asarray(given))


# ----------------------------------------------------------------------------------------------------------
# Bad input: exit code 2, one error line, no traceback, no output file


# id: (arguments after the image and instruction, fragments of the error line); "{name}" is a path in files
BAD_CLI_INPUTS: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "missing-image": (["{missing}", "make it red"], ("does not exist", "missing.png")),
    **{f"{kind}-image": ([f"{{{kind}}}", "make it red"], (f"{kind}.png", *fragments))
       for kind, (_, fragments) in BAD_FILES.items()},
    "zero-byte-mask": (["{image}", "make it red", "--mask", "{zero_byte}"], ("mask", "zero_byte.png", "empty")),
    "mask-wrong-size": (["{image}", "make it red", "--mask", "{wrong_mask}"],
                        ("wrong-size-mask.png", "64x48", "32x32", "resize")),
    "mask-all-black": (["{image}", "make it red", "--mask", "{black_mask}"], ("black.png", "empty")),
    "empty-instruction": (["{image}", "  "], ("instruction is empty",)),
    "10000-char-instruction": (["{image}", "a" * 10_000], ("10,000 characters", "shorten")),
    "sdedit-without-captions": (["{image}", "make it red", "--method", "sdedit", "--model", "{t2i}", "--no-plan"],
                                ("sdedit needs a target caption", "on the command line: --target, --method ip2p")),
    "diffedit-without-captions": (["{image}", "--method", "diffedit"], ("diffedit needs a target caption",)),
    "unknown-method": (["{image}", "make it red", "--method", "magic"],
                       ("unknown method 'magic'", "ip2p, sdedit, encode-decode, diffedit")),
    "model-path-missing": (["{image}", "make it red", "--model", "{missing}/model"], ("does not exist",)),
    "folder-not-a-model": (["{image}", "make it red", "--model", "{not_a_model}"], ("not-a-model", "diffusers")),
    "t2i-model-for-ip2p": (["{image}", "make it red", "--model", "{t2i}"], ("InstructPix2Pix", "--model")),
    "ip2p-model-for-sdedit": (["{image}", "--target", "a red square", "--method", "sdedit", "--model", "{ip2p}"],
                              ("text-to-image", "--model")),
    "strength-1.5": (["{image}", "--target", "x", "--method", "sdedit", "--model", "{t2i}", "--strength", "1.5"],
                     ("strength=1.5", "out of range", "on the command line: --strength")),
    "inpaint-strength-1.5": (["{image}", "--target", "x", "--method", "diffedit", "--model", "{t2i}", "--strength",
                              "1.5"], ("inpaint_strength=1.5", "out of range", "on the command line: --strength")),
    "unknown-param": (["{image}", "make it red", "--model", "{ip2p}", "--param", "strength=0.5"],
                      ("ip2p has no parameter strength", "image_guidance_scale")),
    "param-without-equals": (["{image}", "make it red", "--param", "eta"], ("'eta' is not NAME=VALUE",)),
    "param-bad-value": (["{image}", "make it red", "--model", "{ip2p}", "--param", "eta=abc"],
                        ("eta='abc'", "not a valid float")),
    "bad-dtype": (["{image}", "make it red", "--dtype", "float8"], ("unknown dtype 'float8'", "float32")),
    "unsupported-output-suffix": (["{image}", "--target", "x", "--method", "sdedit", "--model", "{t2i}",
                                   "--steps", "2", "-o", "{out_gif}"], ("suffix '.gif'", ".png")),
    "strength-for-ip2p": (["{image}", "make it red", "--model", "{ip2p}", "--strength", "0.5"],
                          ("ip2p has no strength parameter", "drop --strength")),
    "image-over-max-pixels": (["{image}", "make it red", "--max-pixels", "1000"],
                              ("32x32 = 1,024 pixels", "limit of 1,000", "on the command line: --max-pixels 1024")),
    "save-mask-without-mask": (["{image}", "--target", "x", "--method", "sdedit", "--model", "{t2i}",
                                "--steps", "2", "--save-mask", "{out_mask}"], ("no mask", "drop --save-mask")),
}
if not torch.cuda.is_available():
    BAD_CLI_INPUTS["cuda-without-gpu"] = (["{image}", "make it red", "--device", "cuda"], ("no CUDA GPU",
                                                                                          "--device cpu"))


@pytest.mark.parametrize("case", list(BAD_CLI_INPUTS))
def test_bad_input_exits_2_with_one_error_line(files, t2i, ip2p, tmp_path, case):
    args, fragments = BAD_CLI_INPUTS[case]
    names = {**{k: str(v) for k, v in files.items()}, "t2i": t2i, "ip2p": ip2p,
             "missing": str(tmp_path / "missing.png"), "out_gif": str(tmp_path / "out.gif"),
             "out_mask": str(tmp_path / "mask.png")}
    out = tmp_path / "out.png"
    output = [] if "-o" in args else ["-o", out]
    result = _invoke("edit", *(a.format(**names) for a in args), "--no-progress", *output)
    assert_cli_error(result, *fragments)
    if case != "save-mask-without-mask":  # that one fails after the edit was written (see the report)
        assert not out.exists()
    assert not (tmp_path / "out.gif").exists() and not (tmp_path / "mask.png").exists()


@pytest.mark.parametrize(
    "extra",
    [
        ["--seed", str(2**70)],
        ["--strength", "nan"],
    ],
    ids=["seed-2**70", "strength-nan"],
)
def test_out_of_range_numbers_exit_2(files, t2i, tmp_path, extra):
    result = _invoke(*_sdedit_args(files, t2i, tmp_path / "out.png", *extra))
    assert_cli_error(result, extra[0].removeprefix("--"))


def test_max_pixels_admits_an_image_at_the_limit(files, ip2p, tmp_path):
    out = tmp_path / "out.png"
    result = _invoke("edit", files["image"], "make it red", "--model", ip2p, "--steps", "2", "--max-pixels", "1024",
                     "--no-progress", "-o", out)
    assert result.exit_code == 0, result.output
    assert out.exists()


def test_methods_json_lists_every_declaration():
    result = _invoke("methods", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert listed == [m.describe() for m in available_methods()]
    assert all({"needs", "accepts_mask", "produces_mask", "strength_param", "model_kind", "params"} <= set(m)
               for m in listed)


def test_no_progress_leaves_only_the_error_on_stderr(files, t2i, tmp_path):
    result = _invoke(*_sdedit_args(files, t2i, tmp_path / "out.png", "--strength", "1.5"))
    line = assert_cli_error(result, "strength")
    assert result.stderr == line + "\n", result.stderr


# ----------------------------------------------------------------------------------------------------------
# methods and --help


def _sections(text: str) -> dict[str, str]:
    """Output of `methods` split by method: a header line starts unindented."""
    sections: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line and not line[0].isspace():
            name = line.split()[0]
            sections[name] = ""
        elif name is not None:
            sections[name] += line + "\n"
    return sections


def test_methods_lists_every_method_with_its_defaults():
    result = _invoke("methods")
    assert result.exit_code == 0, result.stderr
    sections = _sections(result.stdout)
    assert list(sections) == [m.name for m in available_methods()] + ["planners", "grounding", "captioners"]
    assert list(sections)[0] == "ip2p"  # the default first
    from instructedit.captioning import CAPTIONERS
    from instructedit.grounding import GROUNDERS

    assert all(f"  {name}: " in sections["grounding"] for name in GROUNDERS)
    assert all(f"  {name}: " in sections["captioners"] for name in CAPTIONERS)
    for method in available_methods():
        for param in method.params:
            assert f"{param.name} = {param.default!r}" in sections[method.name], (method.name, param.name)
    # Defaults differ per method: they are listed under the right one.
    assert "num_inference_steps = 100" in sections["ip2p"] and "num_inference_steps = 50" in sections["sdedit"]
    assert "strength = 0.8" in sections["sdedit"] and "strength = 1.0" in sections["encode-decode"]
    assert "needs: instruction" in sections["ip2p"] and "needs: target" in sections["diffedit"]


def _command_paths() -> list[tuple[str, ...]]:
    """Every command and sub-command of the app, as argument tuples (the app itself is ())."""
    paths: list[tuple[str, ...]] = []

    def walk(command, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


COMMAND_PATHS = _command_paths()


def test_the_documented_commands_exist():
    top = {path[0] for path in COMMAND_PATHS if len(path) == 1}
    assert {"edit", "methods", "train", "domain", "bench", "report"} <= top


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "instructedit")
def test_help_works_for_every_command(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, (result.stderr, result.exception)
    assert "Usage" in result.stdout and "--help" in result.stdout


# ----------------------------------------------------------------------------------------------------------
# The installed console script


def _console_script() -> str:
    script = Path(sys.executable).with_name("instructedit")
    if not script.exists():
        pytest.skip("the instructedit console script is not installed (pip install -e .)")
    return str(script)


def test_console_script_exits_2_with_one_error_line(files, tmp_path):
    """The entry point `main()` passes the exit code through (the edit itself is tested with CliRunner above)."""
    out = tmp_path / "out.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    failed = subprocess.run([_console_script(), "edit", str(files["zero_byte"]), "make it red", "-o", str(out)],
                            capture_output=True, text=True, env=env, timeout=300)
    assert failed.returncode == 2, failed.stderr
    assert failed.stdout == "" and "Traceback" not in failed.stderr
    assert failed.stderr.strip().splitlines() == [failed.stderr.strip()]
    assert failed.stderr.startswith("error: image file") and "zero_byte.png" in failed.stderr
    assert not out.exists()


def test_commands_that_do_not_edit_load_no_model_library():
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from instructedit.cli import app; "
            "r = CliRunner().invoke(app, ['methods']); assert r.exit_code == 0, r.output; "
            "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
