"""FindRelatives request bodies (protobuf JSON) from a KinFaceW-I-like data set, keeping faces the embedder finds.

    python scripts/find_requests.py 127.0.0.1:50051 ../shared/data/kinfacew-i find.json [--count 64]

KinFaceW-I's photos are 64x64 crops and YuNet finds no face in about one in five; a load
test that sends those measures INVALID_ARGUMENT answers, and a soak counts them as errors.
This asks the embedder once per parent photo and writes up to --count requests (one
relative each, the father or the mother, top_n 10) whose photo has a face, for
`kinship loadtest --data-file find.json`.
"""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path

import grpc

from kinship.loadtest.inputs import family_photos
from kinship.v1 import embedder_pb2, embedder_pb2_grpc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("embedder")
    parser.add_argument("dataset", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--count", type=int, default=64)
    args = parser.parse_args()
    requests, skipped = [], 0
    with grpc.insecure_channel(args.embedder) as channel:
        stub = embedder_pb2_grpc.EmbedderStub(channel)
        for relation, image in family_photos(args.dataset, limit=10_000):
            try:
                faces = stub.Embed(embedder_pb2.EmbedRequest(image=image, max_faces=1), timeout=30).faces
            except grpc.RpcError:
                faces = []
            if not faces:
                skipped += 1
                continue
            photo = {"image": base64.b64encode(image).decode()}
            relative = {"label": relation, "relation": f"RELATION_{relation.upper()}", "photos": [photo]}
            requests.append({"relatives": [relative], "top_n": 10})
            if len(requests) >= args.count:
                break
    args.output.write_text(json.dumps(requests))
    print(json.dumps({"requests": len(requests), "skipped_without_face": skipped, "output": str(args.output)}))


if __name__ == "__main__":
    main()
