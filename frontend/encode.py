"""`python -m frontend.encode --model M --image I`: write a request frame to stdout, so the
worker can be driven from a shell: `python -m frontend.encode ... | python -m worker`.

The image goes through the frontend's own preparation function (no second copy of it); the
frame is `protocol`'s.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

from frontend.images import prepare_image
from protocol import Normalization, Request, classify_request, encode_request
from protocol.errors import ServiceError
from protocol.header import MODEL_FORMATS


def build_frame(args: argparse.Namespace) -> bytes:
    model = Path(args.model).read_bytes()
    pixels = prepare_image(Path(args.image).read_bytes(), (args.size, args.size))
    if args.input_mean is not None or args.input_std is not None:
        normalization = Normalization(
            "mean_std",
            127.5 if args.input_mean is None else args.input_mean,
            127.5 if args.input_std is None else args.input_std,
        )
    else:
        normalization = Normalization()
    request = classify_request(
        pixels.tobytes(),
        (1, args.size, args.size),
        model,
        hashlib.sha256(model).hexdigest(),
        args.input_tensor,
        args.output_tensor,
        normalization,
    )
    header = dataclasses.replace(request.header, model_format=args.format)
    return encode_request(Request(header, request.model, request.pixels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m frontend.encode", description="build a request frame from files"
    )
    parser.add_argument("--model", required=True, help=".tflite or frozen .pb file")
    parser.add_argument("--image", required=True, help="any image Pillow opens")
    parser.add_argument("--size", type=int, default=224, help="model input size in pixels")
    parser.add_argument("--format", choices=MODEL_FORMATS, help="default: detected")
    parser.add_argument("--input-tensor")
    parser.add_argument("--output-tensor")
    parser.add_argument("--input-mean", type=float)
    parser.add_argument("--input-std", type=float)
    args = parser.parse_args(argv)
    try:
        frame = build_frame(args)
    except ServiceError as exc:
        print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(json.dumps({"error": {"code": "file_error", "message": str(exc)}}), file=sys.stderr)
        return 1
    sys.stdout.buffer.write(frame)
    return 0


if __name__ == "__main__":
    sys.exit(main())
