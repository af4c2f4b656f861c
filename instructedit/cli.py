"""``instructedit``: a thin command line over the public Python API.

    instructedit edit IMAGE "make the circle red" -o out.png
    instructedit edit IMAGE --method diffedit --source "a red circle" --target "a blue circle" -o out.png
    instructedit methods
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from .commandline import fail as _fail
from .errors import InstructEditError, InvalidRequestError
from .grounding import GROUNDER_NAMES
from .types import DEFAULT_METHOD

app = typer.Typer(
    help="Edit images with words: SDEdit, DDIM encode-decode, DiffEdit, InstructPix2Pix.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


def _check_output(path: Path, option: str) -> None:
    """Refuse an unusable output path before minutes of editing, not after."""
    if path.is_dir():
        raise InvalidRequestError(f"{option} {path} is a folder: give a file name such as {path / 'edited.png'}")
    if path.suffix.lower() not in _SUFFIXES:
        raise InvalidRequestError(
            f"{option} {path} has suffix '{path.suffix}': use one of {', '.join(_SUFFIXES)} (.png keeps the record)"
        )


def _parse_params(pairs: list[str]) -> dict[str, object]:
    params: dict[str, object] = {}
    for pair in pairs:
        if "=" not in pair:
            raise InvalidRequestError(f"--param '{pair}' is not NAME=VALUE: write e.g. --param mask_smoothing=1.0")
        name, value = pair.split("=", 1)
        try:
            params[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[name.strip()] = value
    return params


@app.command()
def edit(
    image: Annotated[Path, typer.Argument(help="Input image (PNG, JPEG, WebP ...).")],
    instruction: Annotated[str | None, typer.Argument(help="The edit, e.g. 'make the circle red'.")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the edited image (.png keeps the "
                                         "record in its text chunks).")] = Path("edited.png"),
    method: Annotated[str, typer.Option(help="Editing method; see `instructedit methods`.")] = DEFAULT_METHOD,
    model: Annotated[str | None, typer.Option(help="Hub id or local diffusers folder; default: the method's "
                                              "built-in model.")] = None,
    lora: Annotated[str | None, typer.Option(help="A LoRA fused into the model: hub id, folder or .safetensors "
                                             "(e.g. latent-consistency/lcm-lora-sdv1-5 with --param scheduler=lcm "
                                             "--steps 4 --guidance 1).")] = None,
    lora_scale: Annotated[float, typer.Option(help="How strongly the LoRA applies (1: as trained).")] = 1.0,
    source: Annotated[str | None, typer.Option(help="Caption of the input image.")] = None,
    target: Annotated[str | None, typer.Option(help="Caption of the edited image.")] = None,
    mask: Annotated[Path | None, typer.Option(help="Edit mask, white = edit, same size as the image.")] = None,
    strength: Annotated[float | None, typer.Option(help="The method's strength parameter (SDEdit/encode-decode "
                                                   "strength, DiffEdit inpaint_strength).")] = None,
    steps: Annotated[int | None, typer.Option(help="num_inference_steps.")] = None,
    guidance: Annotated[float | None, typer.Option(help="guidance_scale (text).")] = None,
    image_guidance: Annotated[float | None, typer.Option(help="image_guidance_scale (InstructPix2Pix).")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Any other method parameter as NAME=VALUE "
                                                    "(repeatable).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same image.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when present).")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32, float16 or bfloat16 (default: fp32 on CPU, fp16 on "
                                              "CUDA).")] = None,
    save_mask: Annotated[Path | None, typer.Option(help="Also write the mask used or produced (DiffEdit).")] = None,
    max_pixels: Annotated[int | None, typer.Option(help="Largest input image in pixels (width x height); default "
                                                   "16,777,216.")] = None,
    plan: Annotated[bool | None, typer.Option("--plan/--no-plan", help="Plan the instruction into edits (compound "
                                              "requests become turns; instruction methods read each plan's "
                                              "canonical wording). Default: only where needed (caption methods "
                                              "given an instruction, --ground).")] = None,
    ground: Annotated[str | None, typer.Option(help="Confine the edit to the entity the instruction names, found by "
                                               f"this grounding backend: auto, {', '.join(GROUNDER_NAMES)}; "
                                               "off = no grounding.")] = None,
    dilate: Annotated[int | None, typer.Option(help="Pixels to grow a grounded mask by (default 2).")] = None,
    planner: Annotated[str | None, typer.Option(help="Planner: 'rules' (default, offline) or the URL of an "
                                                "OpenAI-compatible chat-completions server; model and key from "
                                                "INSTRUCTEDIT_PLANNER_MODEL / INSTRUCTEDIT_PLANNER_API_KEY.")] = None,
    captioner: Annotated[str | None, typer.Option(help="Caption the image for caption methods given only an "
                                                  "instruction: 'builtin' (reference domain), 'blip' or a BLIP "
                                                  "model id/folder. Default: captions of the edited entity only; "
                                                  "--source always wins.")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar over the denoising steps.")] = True,
    offload: Annotated[str, typer.Option(help="On a GPU: none, model (each model on the GPU only while it runs) "
                                         "or sequential (each layer: least memory, slowest).")] = "none",
    vae_tiling: Annotated[bool, typer.Option(help="Encode and decode large images tile by tile.")] = False,
    vae_slicing: Annotated[bool, typer.Option(help="Decode a batch one image at a time.")] = False,
    attention_slicing: Annotated[bool, typer.Option(help="Compute attention in slices (less memory).")] = False,
    quantization: Annotated[str, typer.Option(help="Pipeline editors: store the transformer in 4/8 bits: none, "
                                              "bnb-4bit, bnb-8bit (bitsandbytes) or torchao-int8.")] = "none",
    gguf_file: Annotated[str | None, typer.Option(help="Pipeline editors: a GGUF file (path or URL) of quantised "
                                                  "transformer weights, read with from_single_file.")] = None,
) -> None:
    """Edit IMAGE as INSTRUCTION (or --source/--target captions) say and write the result."""
    from .editor import Editor
    from .inputs import DEFAULT_MAX_PIXELS, save_image
    from .methods import get_method
    from .types import EditRequest

    flags = {"params.num_inference_steps": "steps", "params.guidance_scale": "guidance",
             "params.image_guidance_scale": "image_guidance", "ground_options.dilation": "dilate"}
    try:
        chosen = get_method(method)
        params = _parse_params(param or [])
        if strength is not None:
            if chosen.strength_param is None:
                raise InvalidRequestError(f"{chosen.name} has no strength parameter: drop --strength "
                                          "(see `instructedit methods` for its parameters)")
            params[chosen.strength_param] = strength
            flags[f"params.{chosen.strength_param}"] = "strength"
        for name, value in (("num_inference_steps", steps), ("guidance_scale", guidance),
                            ("image_guidance_scale", image_guidance)):
            if value is not None:
                params[name] = value
        _check_output(output, "--output")
        if save_mask is not None:
            _check_output(save_mask, "--save-mask")
            if not chosen.uses_mask(mask is not None or ground not in (None, "off")):
                raise InvalidRequestError(f"{chosen.name} uses no mask unless --mask is given: drop --save-mask")
        if not progress:
            import diffusers
            import transformers

            transformers.utils.logging.disable_progress_bar()
            diffusers.utils.logging.disable_progress_bar()
        from .engine.memory import MemoryOptions
        from .instructions.llm import planner_from_url

        memory = MemoryOptions(offload=offload, vae_tiling=vae_tiling, vae_slicing=vae_slicing,
                               attention_slicing=attention_slicing, quantization=quantization, gguf_file=gguf_file)
        editor = Editor(device=device, dtype=dtype, progress=progress,
                        max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
                        planner=planner_from_url(planner) if planner else None, captioner=captioner, memory=memory)
        result = editor.edit(EditRequest(
            image=str(image), instruction=instruction, source=source, target=target,
            mask=str(mask) if mask else None, method=chosen.name, params=params, seed=seed, model=model,
            plan=plan, ground=ground, ground_options={} if dilate is None else {"dilation": dilate},
            lora=lora, lora_scale=lora_scale,
        ))
        record = result.record.to_json()
        save_image(result.image, output, metadata={"instructedit": record})
        if save_mask is not None:
            if result.mask is None:
                raise InvalidRequestError(f"{chosen.name} used no mask, so there is none to save: drop --save-mask")
            save_image(result.mask, save_mask, metadata={"instructedit": record})
    except InstructEditError as exc:
        raise _fail(exc, aliases=flags) from None
    typer.echo(f"wrote {output} ({result.record.method}, {result.record.unet_calls} UNet calls, "
               f"{result.record.wall_time_s:.2f} s)")


@app.command()
def methods(
    as_json: Annotated[bool, typer.Option("--json", help="Print the declarations as JSON.")] = False,
) -> None:
    """List the editing methods, the texts they need, and their parameters with defaults."""
    from .methods import available_methods

    if as_json:
        typer.echo(json.dumps([m.describe() for m in available_methods()], indent=2))
        return
    for m in available_methods():
        aliases = f" (aliases: {', '.join(m.aliases)})" if m.aliases else ""
        typer.echo(f"{m.name}{aliases}\n  {m.description}")
        mask = "produced, or given" if m.produces_mask else ("optional" if m.accepts_mask else "no")
        strength = f"; strength: {m.strength_param}" if m.strength_param else ""
        typer.echo(f"  needs: {', '.join(sorted(m.needs))}; mask: {mask}{strength}; "
                   f"model: {m.model_kind} (default {m.default_model})")
        for p in m.params:
            typer.echo(f"    {p.name} = {p.default!r}  -- {p.help}")
    from .captioning import CAPTIONERS
    from .grounding import GROUNDERS

    typer.echo("\nplanners (--planner): rules (offline, the default) or the URL of an OpenAI-compatible "
               "chat-completions server (no language model ships offline)")
    typer.echo("grounding backends (--ground):")
    for name, description in GROUNDERS.items():
        typer.echo(f"  {name}: {description}")
    typer.echo("captioners (--captioner):")
    for name, description in CAPTIONERS.items():
        typer.echo(f"  {name}: {description}")


@app.command()
def batch(
    manifest: Annotated[Path, typer.Argument(help="JSONL file: one edit per line (image, instruction or "
                                                  "source/target, method, params, seed, mask, model, id).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for images/ and results.jsonl.")],
    device: Annotated[str | None, typer.Option(help="cpu, cuda, cuda:1, mps (default: the best available).")
                      ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar over the lines.")] = True,
) -> None:
    """Edit every line of MANIFEST; rerun the same command to resume (finished lines are never redone)."""
    from .editor import Editor
    from .serving.batch import run_batch

    try:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = lambda total: tqdm(total=total, desc="batch", unit="edit")  # noqa: E731
        summary = run_batch(manifest, output, editor=Editor(device=device), progress=bar)
    except InstructEditError as exc:
        raise _fail(exc) from None
    typer.echo(f"{summary.done} done, {summary.already_done} already done, {summary.failed} failed "
               f"(each with its reason in {summary.results})")
    if summary.failed:
        raise typer.Exit(code=1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data: Annotated[Path, typer.Option(help="Folder for the job store and the result files.")] = Path(
        "instructedit-data"),
    workers: Annotated[int, typer.Option(min=1, help="Worker processes claiming jobs (one per GPU).")] = 1,
    api_key: Annotated[list[str] | None, typer.Option(help="Require this API key (repeatable).")] = None,
    api_keys_file: Annotated[Path | None, typer.Option(help="Require one of the keys in this file, one a line.")
                             ] = None,
    max_queue: Annotated[int, typer.Option(min=1, help="Queued jobs beyond which submissions get 429.")] = 64,
    max_upload_mb: Annotated[float, typer.Option(help="Largest upload accepted (413 beyond).")] = 20.0,
    max_pixels: Annotated[int | None, typer.Option(help="Largest image in pixels (413 beyond).")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(help="Allow browser pages from this origin (off by "
                                                                "default; repeatable).")] = None,
) -> None:
    """Run the HTTP service and the web page: POST /v1/edits, GET /v1/jobs/{id}, /v1/images/edits, / ."""
    try:
        import uvicorn

        from .inputs import DEFAULT_MAX_PIXELS
        from .serving.app import create_app
    except ImportError as exc:
        raise _fail(f"the service needs its extra: pip install \"instructedit[serve]\" ({exc})") from None
    keys = set(api_key or [])
    if api_keys_file is not None:
        try:
            keys |= {line.strip() for line in api_keys_file.read_text().splitlines() if line.strip()}
        except OSError as exc:
            raise _fail(f"cannot read --api-keys-file {api_keys_file}: {exc.strerror}") from None
        if not keys:
            raise _fail(f"--api-keys-file {api_keys_file} holds no key: one key a line")
    service = create_app(data, workers=workers, api_keys=frozenset(keys), max_queue=max_queue,
                         max_upload_bytes=int(max_upload_mb * 2**20),
                         max_pixels=DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels,
                         cors_origins=tuple(cors_origin or ()))
    typer.echo(f"instructedit service on http://{host}:{port}/ (data in {data})", err=True)
    uvicorn.run(service, host=host, port=port, log_level="warning")


def _mount_subcommands() -> None:
    from .domain.cli import app as domain_app
    from .evaluation.cli import register as register_evaluation
    from .training.cli import app as train_app

    app.add_typer(train_app, name="train")
    app.add_typer(domain_app, name="domain")
    register_evaluation(app)


_mount_subcommands()


def main() -> None:
    """Console entry point."""
    app(prog_name="instructedit")


if __name__ == "__main__":
    sys.exit(main())
