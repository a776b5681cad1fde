"""Turning 8-bit RGB pixels into a model's input tensor, and raw outputs into probabilities."""

from __future__ import annotations

import numpy as np

from protocol import ModelFailed, Normalization

FLOAT_DEFAULT = Normalization(mode="mean_std", mean=127.5, std=127.5)


def effective_normalization(requested: Normalization, dtype: np.dtype) -> Normalization:
    """What `model_default` means for an input of `dtype`: raw pixels for a quantized (integer)
    input, whose own scale and zero point map them; [-1, 1] for a float one."""
    if requested.mode != "model_default":
        return requested
    return Normalization("raw") if np.issubdtype(dtype, np.integer) else FLOAT_DEFAULT


def to_input(
    pixels: np.ndarray,
    normalization: Normalization,
    dtype: np.dtype,
    quantization: tuple[float, int] = (0.0, 0),
) -> np.ndarray:
    """Pixels [n,h,w,3] uint8 → the model's input dtype.

    Quantized inputs with `model_default` or `raw` take the pixels as they are (that is what
    quantized MobileNets are built for); with an explicit mean/std the real value is quantized
    with the model's own scale and zero point.
    """
    scale, zero_point = quantization
    quantized = np.issubdtype(dtype, np.integer)
    norm = effective_normalization(normalization, dtype)
    if norm.mode == "raw":
        return pixels.astype(dtype, copy=False)
    real = (pixels.astype(np.float32) - np.float32(norm.mean)) / np.float32(norm.std)
    if not quantized:
        return real.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    q = np.round(real / (scale or 1.0)) + zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def to_probabilities(
    raw: np.ndarray, images: int, quantization: tuple[float, int] = (0.0, 0)
) -> tuple[np.ndarray, str]:
    """Dequantize if needed; apply softmax to outputs that are not already a distribution.
    Returns the probabilities and what the outputs were: `probabilities`, `logits` (softmax
    applied), or `features`: no negative value yet some over 1, as the pooled activations of an
    embedding model (a classifier cut before its last layer) are, which are no class scores at
    all (softmax applied all the same; a registration refuses such a model).

    The output must hold one row per image (`images`): a graph that answers another count at
    some input size (a Reshape to [-1, classes] after a pool that no longer ends at 1x1) does
    not run at that size. Values outside [0, 1] are logits. A float output must also sum to
    1; a quantized softmax sums to 1 only roughly (0.89 seen on the iNat bird model), so its sum
    is not a test.
    """
    scale, zero_point = quantization
    quantized = np.issubdtype(raw.dtype, np.integer) and bool(scale)
    values = raw.astype(np.float32)
    if quantized:
        values = (values - zero_point) * scale
    if values.ndim == 0 or values.shape[0] != images or values.size == 0:
        raise ModelFailed(
            f"the model answered an output of shape {[int(d) for d in raw.shape]} for "
            f"{images} image{'s' if images != 1 else ''}, not one row of scores per image"
        )
    values = values.reshape(images, -1)
    is_distribution = (
        values.min() >= 0
        and values.max() <= 1
        and (quantized or np.allclose(values.sum(axis=1), 1.0, atol=0.01))
    )
    if is_distribution:
        return values, "probabilities"
    kind = "features" if values.min() >= 0 and values.max() > 1 else "logits"
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True), kind
