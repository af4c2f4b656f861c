"""Image-editing evaluation metrics: pixel (L1, L2, MSE, PSNR, SSIM), LPIPS, FID/KID and feature similarities.

Each metric lives in its own module (``pixel``, ``lpips``, ``fid``, ...) and is imported from there; this package
imports nothing heavy on purpose. Shared input handling (images, edit masks, the unedited region) is in
``_images``.
"""
