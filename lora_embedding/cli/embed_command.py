"""``lora-embedding embed``: print the embedding of one LoRA file."""

import os

from ..errors import LoraReadError
from .options import fail, print_json


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "embed", help="print the embedding vector of a LoRA file",
        description="Read a LoRA file and print its family, the model that embedded it, and the vector.",
    )
    parser.add_argument("path", help="a LoRA file")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--training-free", action="store_true", help="use the training-free path even when a learned model exists")
    parser.set_defaults(func=run)


def run(args):
    from ..embedder import Embedder

    if not os.path.isfile(args.path):
        return fail(f"{args.path}: no such file")
    try:
        embedding = Embedder(use_learned=not args.training_free).embed_path(args.path)
    except LoraReadError as exc:
        if args.json:
            print_json({"path": args.path, "error": exc.reason})
        else:
            print(f"{args.path}: {exc.reason}")
        return 1

    result = {"path": args.path, **embedding.to_json()}
    if args.json:
        print_json(result)
        return 0
    print(f"{args.path}: family {embedding.family}, {embedding.kind} model {embedding.model_id}, dim {embedding.dim}")
    print(" ".join(f"{x:.4f}" for x in embedding.vector[:16]) + (" ..." if embedding.dim > 16 else ""))
    return 0
