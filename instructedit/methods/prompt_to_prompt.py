"""Prompt-to-Prompt (Hertz et al. 2022) on real images: invert the input with the source caption, then denoise
the source and the target caption side by side, the target reusing the source's attention.

The inversion is DDIM (the pivot), optionally refined by null-text inversion (Mokady et al. 2023: the
unconditional embedding optimised per step so that guidance-7.5 sampling retraces the pivot) or replaced by
negative-prompt inversion (Miyake et al. 2023: the source caption's embedding as the unconditional one, no
optimisation). Attention control, alignment and local blending are in :mod:`instructedit.engine.prompt_to_prompt`
and :mod:`instructedit.engine.alignment`; defaults are the authors' (50 steps, guidance 7.5, cross-attention
replaced for 80% of the steps, self-attention for 40%, local blend threshold 0.3, 10 null-text updates per step).
"""

from __future__ import annotations

from .base import GUIDANCE, STEPS, EditContext, Method, MethodOutput, Param

INVERSIONS = ("null-text", "negative-prompt", "ddim")
EDITS = ("auto", "replace", "refine")


def parse_weights(text: str, param: str = "reweight", example: str = "blue:2, star:0.5") -> dict[str, float]:
    """``"word:2, other:0.5"`` -> ``{"word": 2.0, "other": 0.5}``; a clear error naming ``params.<param>``."""
    from ..errors import InvalidRequestError

    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        word, sep, value = item.rpartition(":")
        try:
            if not sep or not word.strip():
                raise ValueError(item)
            weights[word.strip()] = float(value)
        except ValueError:
            raise InvalidRequestError(
                f"p2p: {param}={text!r} is not a list of word:value pairs (e.g. '{example}')",
                field=f"params.{param}",
            ) from None
    return weights


class PromptToPrompt(Method):
    def run(self, ctx: EditContext, *, edit, cross_replace_steps, cross_replace_words, self_replace_steps,
            reweight, local_blend,
            blend_words, local_blend_threshold, inversion, num_inference_steps, guidance_scale, num_inner_steps,
            early_stop_epsilon, null_text_learning_rate) -> MethodOutput:
        import torch

        from ..engine import alignment
        from ..engine.attention import CrossAttentionStore, controlled_attention
        from ..engine.guidance import BatchCFGDenoiser
        from ..engine.latents import sample_latents
        from ..engine.prompt_to_prompt import LocalBlend, MaskBlend, refine, reweighted, word_swap
        from ..engine.prompt_to_prompt import PromptToPrompt as Controller
        from ..engine.sampling import denoise, make_scheduler

        source, target, tokenizer = ctx.source, ctx.target, ctx.components.tokenizer
        weights = parse_weights(reweight)
        kind = edit if edit != "auto" else (
            "replace" if len(source.split(" ")) == len(target.split(" ")) else "refine")
        if kind == "replace":
            cross_edit = word_swap(alignment.replacement_mapper(source, target, tokenizer))
        else:
            cross_edit = refine(*alignment.refinement_mapper(source, target, tokenizer))
        if weights:
            cross_edit = reweighted(cross_edit, alignment.equalizer(target, weights, tokenizer))
        word_steps = None
        per_word = parse_weights(cross_replace_words, "cross_replace_words", "lasagne:0.2")
        if per_word:
            if not all(0 <= v <= 1 for v in per_word.values()):
                from ..errors import InvalidRequestError

                raise InvalidRequestError(f"p2p: cross_replace_words={cross_replace_words!r}: each fraction must "
                                          "lie in [0, 1]", field="params.cross_replace_words")
            # the authors' dict {"default_": x, word: y}: a fraction per target token, the default elsewhere
            word_steps = alignment.equalizer(target, per_word, tokenizer, default=cross_replace_steps,
                                             field="params.cross_replace_words")[0]

        original = sample_latents(ctx.encode(), ctx.generator, ctx.vae)
        trajectory = ctx.invert(source, 1.0, original, num_inference_steps, 1.0)
        if inversion == "null-text":
            embeddings = ctx.null_text(source, guidance_scale, original, trajectory, num_inner_steps=num_inner_steps,
                                       early_stop_epsilon=early_stop_epsilon, learning_rate=null_text_learning_rate)
        scheduler = make_scheduler(ctx.components.scheduler, "ddim")
        scheduler.set_timesteps(num_inference_steps)
        timesteps = scheduler.timesteps
        if inversion == "null-text":
            uncond = {int(t): e for t, e in zip(timesteps, embeddings, strict=True)}
        elif inversion == "negative-prompt":
            uncond = ctx.prompts(source)
        else:
            uncond = ctx.prompts("")
        denoiser = BatchCFGDenoiser(ctx.unet, ctx.prompts([source, target]), uncond, guidance_scale)

        side = int(original.shape[-1])
        after_step, blend = None, None
        user_mask = ctx.latent_mask(original.shape[-2:])
        words = [w for w in blend_words.split(" ") if w] if blend_words else None
        store = None
        if user_mask is not None:
            after_step = MaskBlend(user_mask)
        elif local_blend:
            from_words, to_words = (words, words) if words else alignment.changed_words(source, target)
            rows = torch.zeros(2, alignment.max_tokens(tokenizer))
            for row, (text, chosen) in enumerate(((source, from_words), (target, to_words))):
                for word in chosen:
                    rows[row, [p for p in alignment.word_token_indices(text, word, tokenizer) if p < rows.shape[1]]] = 1
            if words and not rows.any():
                from ..errors import InvalidRequestError

                raise InvalidRequestError(f"p2p: blend_words {blend_words!r} names no word of either caption",
                                          field="params.blend_words")
            if rows.any():
                store = CrossAttentionStore(max_resolution=side, places=("down", "up"))
                blend = after_step = LocalBlend(store, rows, max(1, side // 4), local_blend_threshold)

        controller = Controller(
            cross_edit, num_inference_steps, cross_replace_steps=word_steps if word_steps is not None
            else cross_replace_steps, self_replace_steps=self_replace_steps, self_max_queries=max(1, side // 4) ** 2,
            guided=denoiser.guided, store=store,
        )
        start = trajectory[-1].expand(2, *trajectory[-1].shape[1:])
        with controlled_attention(ctx.unet, controller):
            latents = denoise(denoiser, scheduler, start, timesteps, generator=ctx.generator, after_step=after_step,
                              progress=ctx.progress)
        mask = user_mask if user_mask is not None else (blend.mask if blend is not None else None)
        return MethodOutput(latents[1:], mask, produced_mask=blend is not None and blend.mask is not None)


METHOD = PromptToPrompt(
    name="p2p",
    description="Prompt-to-Prompt on a real image: inversion (null-text by default), then the target caption "
    "denoised reusing the source's cross- and self-attention, blended outside the edited words' attention",
    needs=frozenset({"source", "target"}),
    params=(
        Param("edit", "auto", "attention edit: replace (word swap, same word count), refine (words added or "
              "removed), auto picks by word count", choices=EDITS),
        Param("cross_replace_steps", 0.8, "fraction of the steps in which the target uses the source's "
              "cross-attention", 0.0, 1.0),
        Param("cross_replace_words", "", "per-word cross_replace_steps for target words, e.g. 'lasagne:0.2' (the "
              "authors' {'default_': 0.8, 'lasagne': 0.2})"),
        Param("self_replace_steps", 0.4, "fraction of the steps in which the target uses the source's "
              "self-attention (coarse layers)", 0.0, 1.0),
        Param("reweight", "", "scale words' attention in the target, e.g. 'blue:2, star:0.5'"),
        Param("local_blend", True, "keep the source outside where the edited words attend"),
        Param("blend_words", "", "words whose attention makes the blend region (default: the changed words)"),
        Param("local_blend_threshold", 0.3, "fraction of the peak attention inside the blend region", 0.0, 1.0),
        Param("inversion", "null-text", "how the input is inverted: " + ", ".join(INVERSIONS), choices=INVERSIONS),
        STEPS, GUIDANCE,
        Param("num_inner_steps", 10, "null-text inversion: optimiser updates per step", 1, 100),
        Param("early_stop_epsilon", 1e-5, "null-text inversion: stop a step's updates below this loss", 0.0, 1.0),
        Param("null_text_learning_rate", 1e-2, "null-text inversion: Adam's learning rate at the first step",
              0.0, 1.0),
    ),
    produces_mask=True,
    aliases=("prompt-to-prompt", "prompt2prompt"),
)
