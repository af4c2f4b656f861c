"""Tiny random pipelines of the large editors (FLUX.1 Kontext, FLUX.2 klein, Qwen-Image-Edit, LongCat, SDXL
InstructPix2Pix, LEDITS++), built from configs with no download.

They have the real pipelines' classes and component types at a few thousand parameters each (the sizes
diffusers' own pipeline tests use), so our methods can be compared with the pipelines called directly, and
saved folders exercise the real ``from_pretrained`` paths. Their tokenizers are built here too: a T5 Unigram and
a Qwen byte-level BPE whose special tokens sit at the real models' ids (the hub's tiny tokenizers are not
reachable offline). Outputs are noise: they test plumbing, never quality.
"""

from __future__ import annotations

from pathlib import Path

import torch

_WORDS = ("a an the and of in on with to it is make turn add remove replace change colour color red blue green "
          "yellow white black circle square star triangle background sky sea grass hat cat dog man woman painting "
          "squirrel eating burger picture photo image into bigger smaller left right").split()

QWEN_SPECIAL_TOKENS = {  # the ids Qwen2/2.5-VL and Qwen3 use (the tiny text encoders' vocabularies cover them)
    "<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645, "<|object_ref_start|>": 151646,
    "<|object_ref_end|>": 151647, "<|box_start|>": 151648, "<|box_end|>": 151649, "<|quad_start|>": 151650,
    "<|quad_end|>": 151651, "<|vision_start|>": 151652, "<|vision_end|>": 151653, "<|vision_pad|>": 151654,
    "<|image_pad|>": 151655, "<|video_pad|>": 151656,
}


def t5_tokenizer():
    """A ``T5TokenizerFast`` (SentencePiece-style Unigram) over a small English vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [("▁" + w, -1.0) for w in _WORDS]
    vocab += [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz▁.,'"]
    tokenizer = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                             special_tokens=[("</s>", 1)])
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    return T5TokenizerFast(tokenizer_object=tokenizer, eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                           extra_ids=0)


_QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'text' %}{{ item['text'] }}"
    "{% elif item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>{% endif %}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def qwen_tokenizer():
    """A ``Qwen2TokenizerFast``: byte-level BPE (bytes plus a few merged words) with Qwen's special tokens at
    their real ids and a chat template, enough for the Qwen-Image, FLUX.2 klein and LongCat pipelines."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    from .tokenizer import _bytes_to_unicode

    symbols = list(_bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols)}
    merges = []
    for word in _WORDS:  # "Ġred" etc.: whole words as single tokens, merged left to right
        piece = "Ġ" + word
        current = piece[0]
        for char in piece[1:]:
            merges.append((current, char))
            current += char
            vocab.setdefault(current, len(vocab))
    merges = list(dict.fromkeys(merges))
    first_special = min(QWEN_SPECIAL_TOKENS.values())
    for i in range(len(vocab), first_special):  # fill up to Qwen's special ids with unreachable entries
        vocab[f"<|unused_{i}|>"] = i
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    for token, _ in sorted(QWEN_SPECIAL_TOKENS.items(), key=lambda item: item[1]):
        tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False)])
    assert tokenizer.token_to_id("<|image_pad|>") == QWEN_SPECIAL_TOKENS["<|image_pad|>"]
    qwen = Qwen2TokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                              unk_token=None, bos_token=None)
    qwen.chat_template = _QWEN_CHAT_TEMPLATE
    return qwen


def _clip_text(hidden: int = 32, projection: bool = False, seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_size=hidden,
                            intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, vocab_size=49408,
                            max_position_embeddings=77, projection_dim=hidden, hidden_act="gelu")
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config).eval()


def _clip_tokenizer():
    from .tokenizer import build_clip_tokenizer

    return build_clip_tokenizer(Path.home() / ".cache" / "instructedit" / "clip-tokenizer")


def _flux_vae(cls_name: str = "AutoencoderKL", blocks: int = 1, latent_channels: int = 1, **extra):
    import diffusers

    torch.manual_seed(0)
    return getattr(diffusers, cls_name)(
        sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,) * blocks, layers_per_block=1,
        latent_channels=latent_channels, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        down_block_types=("DownEncoderBlock2D",) * blocks, up_block_types=("UpDecoderBlock2D",) * blocks, **extra,
    ).eval()


def tiny_kontext():
    """A ``FluxKontextPipeline`` of tiny random components."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline, FluxTransformer2DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    tokenizer_2 = t5_tokenizer()
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=len(tokenizer_2), d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4,
                                 relative_attention_num_buckets=8, decoder_start_token_id=0)).eval()
    return FluxKontextPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux_vae(shift_factor=0.0609, scaling_factor=1.5035),
        text_encoder=_clip_text(), tokenizer=_clip_tokenizer(), text_encoder_2=t5, tokenizer_2=tokenizer_2,
        transformer=transformer.eval(), image_encoder=None, feature_extractor=None,
    )


def tiny_flux2_klein():
    """A ``Flux2KleinPipeline`` of tiny random components (Qwen3 text encoder)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Transformer2DModel
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    transformer = Flux2Transformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                          attention_head_dim=16, num_attention_heads=2, joint_attention_dim=16,
                                          timestep_guidance_channels=256, axes_dims_rope=[4, 4, 4, 4],
                                          guidance_embeds=False)
    torch.manual_seed(0)
    text_encoder = Qwen3ForCausalLM(Qwen3Config(intermediate_size=16, hidden_size=16, num_hidden_layers=2,
                                                num_attention_heads=2, num_key_value_heads=2, vocab_size=151936,
                                                max_position_embeddings=512)).eval()
    return Flux2KleinPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=_flux_vae("AutoencoderKLFlux2"),
                              text_encoder=text_encoder, tokenizer=qwen_tokenizer(), transformer=transformer.eval())


def tiny_sdxl_ip2p():
    """A ``StableDiffusionXLInstructPix2PixPipeline`` of tiny random components (8-channel SDXL UNet)."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLInstructPix2PixPipeline,
        UNet2DConditionModel,
    )

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
    ).eval()
    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
                        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], latent_channels=4,
                        sample_size=128).eval()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    tokenizer = _clip_tokenizer()
    return StableDiffusionXLInstructPix2PixPipeline(
        vae=vae, text_encoder=_clip_text(), text_encoder_2=_clip_text(projection=True, seed=1), tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def tiny_stable_diffusion():
    """A ``StableDiffusionPipeline`` of the tiny components (:func:`instructedit.models.tiny.tiny_components`),
    the checkpoint kind LEDITS++ runs on."""
    from diffusers import StableDiffusionPipeline

    from .tiny import tiny_components

    return StableDiffusionPipeline(**tiny_components("t2i"), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def qwen_vl_processor(tokenizer):
    """A ``Qwen2VLProcessor`` over ``tokenizer`` and the PIL image processor.

    Built without the processor's constructor, which insists on a video processor, and transformers' video
    processors need torchvision (which instructedit never installs beside its CPU torch); the pipelines only
    process images.
    """
    from transformers import Qwen2VLImageProcessorPil, Qwen2VLProcessor

    processor = Qwen2VLProcessor.__new__(Qwen2VLProcessor)
    processor.image_token, processor.video_token = "<|image_pad|>", "<|video_pad|>"
    processor.image_token_id = tokenizer.convert_tokens_to_ids(processor.image_token)
    processor.video_token_id = tokenizer.convert_tokens_to_ids(processor.video_token)
    processor.image_processor, processor.tokenizer, processor.video_processor = (
        Qwen2VLImageProcessorPil(), tokenizer, None)
    processor.chat_template = tokenizer.chat_template
    return processor


def _qwen_vl_text_encoder():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    config = Qwen2_5_VLConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                     "num_key_value_heads": 2, "rope_theta": 1000000.0,
                     "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}},
        vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2, "out_hidden_size": 16},
        hidden_size=16, vocab_size=152064, vision_start_token_id=QWEN_SPECIAL_TOKENS["<|vision_start|>"],
        vision_end_token_id=QWEN_SPECIAL_TOKENS["<|vision_end|>"],
        vision_token_id=QWEN_SPECIAL_TOKENS["<|vision_pad|>"],
        image_token_id=QWEN_SPECIAL_TOKENS["<|image_pad|>"],
    )
    return Qwen2_5_VLForConditionalGeneration(config).eval()


def tiny_qwen_edit():
    """A ``QwenImageEditPipeline`` of tiny random components (Qwen2.5-VL text encoder, Qwen-Image VAE)."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPipeline,
        QwenImageTransformer2DModel,
    )

    torch.manual_seed(0)
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2,
                                              attention_head_dim=16, num_attention_heads=3, joint_attention_dim=16,
                                              guidance_embeds=False, axes_dims_rope=(8, 4, 4)).eval()
    torch.manual_seed(0)
    vae = AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1,
                                 temperal_downsample=[False, True], latents_mean=[0.0] * 4,
                                 latents_std=[1.0] * 4).eval()
    tokenizer = qwen_tokenizer()
    return QwenImageEditPipeline(transformer=transformer, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(),
                                 text_encoder=_qwen_vl_text_encoder(), tokenizer=tokenizer,
                                 processor=qwen_vl_processor(tokenizer))


def tiny_longcat_edit():
    """A ``LongCatImageEditPipeline`` of tiny random components (Qwen2.5-VL text encoder, FLUX-style VAE)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, LongCatImageEditPipeline, LongCatImageTransformer2DModel

    torch.manual_seed(0)
    transformer = LongCatImageTransformer2DModel(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1,
                                                 attention_head_dim=16, num_attention_heads=2,
                                                 joint_attention_dim=16, pooled_projection_dim=16,
                                                 axes_dims_rope=[4, 4, 8]).eval()
    tokenizer = qwen_tokenizer()
    return LongCatImageEditPipeline(scheduler=FlowMatchEulerDiscreteScheduler(),
                                    # 8x down-sampling, 16 channels: the pipeline works at about a megapixel
                                    # and hard-codes FLUX's 16 latent channels
                                    vae=_flux_vae(blocks=4, latent_channels=16, shift_factor=0.0609,
                                                  scaling_factor=1.5035),
                                    text_encoder=_qwen_vl_text_encoder(), tokenizer=tokenizer,
                                    text_processor=qwen_vl_processor(tokenizer), transformer=transformer)
