"""Fills a gallery to ROWS people through the indexer's BulkEnrol, then waits until Milvus has indexed them.

    python scripts/fill_gallery.py INDEXER_ADDRESS --rows 1000000 [--model-id ID] [--streams 4] [--seed 7]

Random unit vectors of the model's dimension (the collection must exist: enrol a real face
first), one record per person (`scale-<n>`), 1,000 records a message over `--streams`
concurrent streams, serialised before the clock starts. Prints rows/s, then waits for
`Stats` to show every row indexed and nothing pending (the indexer flushes a collection
once its writes stop). Used by scripts/find_at_scale.sh.
"""

from __future__ import annotations

import argparse
import sys
import time

import grpc
import numpy as np
from tqdm import tqdm

from kinship.cli.bench_index import ingest
from kinship.v1 import indexer_pb2, indexer_pb2_grpc

BATCH = 1000


def messages(model_id: str, dimension: int, first: int, count: int, seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    out = []
    for start in range(first, first + count, BATCH):
        size = min(BATCH, first + count - start)
        vectors = rng.standard_normal((size, dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            indexer_pb2.GalleryRecord(
                record_id=f"scale-{start + i}", person_id=f"scale-{start + i}", embedding=v.tolist()
            )
            for i, v in enumerate(vectors)
        ]
        out.append(indexer_pb2.BulkEnrolRequest(model_id=model_id, records=records).SerializeToString())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("indexer")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--model-id", help="[default: the indexer's first collection]")
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--index-timeout", type=float, default=3600)
    args = parser.parse_args()
    channel = grpc.insecure_channel(args.indexer, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = indexer_pb2_grpc.IndexerStub(channel)
    collections = stub.ListCollections(indexer_pb2.ListCollectionsRequest(), timeout=60).collections
    chosen = [c for c in collections if not args.model_id or c.model_id == args.model_id]
    if not chosen:
        sys.exit(f"no collection for {args.model_id or 'any model'}: enrol one real face first")
    model_id, dimension = chosen[0].model_id, chosen[0].dimension
    share = -(-args.rows // args.streams)
    print(f"preparing {args.rows:,} rows of {dimension}-d for {model_id}", file=sys.stderr)
    streams = [
        messages(model_id, dimension, k * share, min(share, args.rows - k * share), args.seed + k)
        for k in range(args.streams)
        if k * share < args.rows
    ]
    with tqdm(total=args.rows, unit="rows", desc="loading", file=sys.stderr, disable=None) as bar:
        rate = ingest(channel, streams, bar)  # the bench's loader: one thread per stream, refusals fatal
    print(f"enrolled {args.rows:,} rows at {rate:,.0f} rows/s; waiting for the index", file=sys.stderr)
    waited = time.perf_counter()
    while True:
        stats = stub.Stats(indexer_pb2.StatsRequest(), timeout=120).collections
        mine = next(c for c in stats if c.collection.model_id == model_id)
        if mine.indexed_rows >= mine.collection.record_count and mine.pending_index_rows == 0:
            break
        if time.perf_counter() - waited > args.index_timeout:
            sys.exit(f"not indexed within {args.index_timeout:.0f} s: {mine}")
        time.sleep(5)
    index_s = time.perf_counter() - waited
    print(f"indexed: {mine.collection.record_count:,} rows, {index_s:.0f} s after the load", file=sys.stderr)
    print(f'{{"rows": {mine.collection.record_count}, "ingest_rows_per_s": {rate:.1f}, "index_s": {index_s:.1f}}}')
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
