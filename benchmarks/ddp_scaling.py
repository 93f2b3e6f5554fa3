"""Data-parallel training throughput: 1 process vs N processes (torchrun, gloo) on the same global batch.

LeNet-300-100 on Fashion-MNIST with the LTH recipe (Adam 1.2e-3), --steps iterations of the global
batch --batch-size, evaluated only at the end so that the figures are about training. Each
configuration gets the same cores: one process with all --threads, or N processes with
threads / N each. One process runs under torchrun too (WORLD_SIZE 1: the plain single-process
trainer). Configurations alternate over --rounds; reported are medians of examples/s, over the
optimization steps alone (forward, backward with the gradient all-reduce, step, mask, buffer sync)
and over the whole training wall time (checkpoints and the final evaluation, which every rank repeats),
and the N-process / 1-process ratios. On a machine busy with other work, a process with several threads
can stall spin-waiting for a core (smoke runs here gave 1 process on 2 threads 30x slower than on 1);
compare with --threads 1 there (every process one thread, so N processes then use N cores to 1).

    .venv/bin/python benchmarks/ddp_scaling.py [--steps 300] [--batch-size 60] [--rounds 3] [--procs 2]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile


def worker(args) -> None:
    import torch

    from ticketlab import distributed
    from ticketlab.config import TrainConfig
    from ticketlab.data import load_dataset
    from ticketlab.models import create_model
    from ticketlab.trainer import train
    distributed.init_from_env()
    rank, world = distributed.world()
    torch.set_num_threads(max(1, args.threads // world))
    data = load_dataset("fashion-mnist")
    cfg = TrainConfig(optimizer="adam", lr=1.2e-3, batch_size=args.batch_size, steps=f"{args.steps}it",
                      eval_every=f"{args.steps}it")
    model = create_model("lenet_300_100", data.input_shape, data.num_classes, seed=0)
    summary = train(model, data, cfg, out_dir=args.out, data_seed=0, quiet=True)
    if rank == 0:
        print(json.dumps({"world": world, "examples": summary["train_examples"],
                          "step_seconds": summary["step_time_seconds"], "wall_seconds": summary["wall_time_seconds"],
                          "test_accuracy": summary["test_accuracy"]}))


def launch(procs: int, args) -> dict:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs), "--standalone",
                   __file__, "--worker", "--out", out, "--steps", str(args.steps), "--batch-size", str(args.batch_size),
                   "--threads", str(args.threads)]
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, args.threads // procs))}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"{procs}-process run failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    if args.batch_size % args.procs:
        sys.exit(f"--batch-size {args.batch_size} must be a multiple of --procs {args.procs}")
    runs = {1: [], args.procs: []}
    for r in range(args.rounds):
        for procs in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            runs[procs].append(launch(procs, args))

    def rate(procs, key):
        return statistics.median(run["examples"] / run[key] for run in runs[procs])

    print(f"LeNet-300-100 on Fashion-MNIST, {args.steps} iterations of global batch {args.batch_size}, "
          f"{args.threads} threads in all, median of {args.rounds} round(s)")
    for procs in runs:
        print(f"  {procs} process(es): {rate(procs, 'step_seconds'):9.0f} examples/s in steps, "
              f"{rate(procs, 'wall_seconds'):9.0f} examples/s overall, "
              f"test accuracy {runs[procs][0]['test_accuracy']:.4f}")
    print(f"  ratio {args.procs}/1: {rate(args.procs, 'step_seconds') / rate(1, 'step_seconds'):.2f}x in steps, "
          f"{rate(args.procs, 'wall_seconds') / rate(1, 'wall_seconds'):.2f}x overall")


if __name__ == "__main__":
    main()
