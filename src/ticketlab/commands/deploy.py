"""The deployment commands: export, infer, profile."""

from __future__ import annotations

from dataclasses import dataclass

from ticketlab import checks
from ticketlab.commands.spec import Command, Output, arg
from ticketlab.deploy.export import FORMATS, export_ticket
from ticketlab.deploy.infer import run_inference
from ticketlab.deploy.profile import MAX_REPEATS, check_profile_request, profile_table, profile_ticket
from ticketlab.deploy.sparse import PATHS
from ticketlab.errors import TicketlabError

TORCHSCRIPT_HELP = ("allow a TorchScript file; only for files you trust: loading TorchScript runs code from the file "
                    "(safetensors and ONNX files hold only data)")


@dataclass(kw_only=True)
class ExportOptions(Output):
    ticket: str = arg(help="ticket file", positional=True)
    format: str = arg(help="what to write: compact, dense, torchscript or onnx", choices=FORMATS)
    out: str = arg(help="file to write", writes="file")
    half: bool = arg(False, "compact only: store the live values in float16", bare=True)
    weights: str = arg("auto", "trained weights, θ_k, or auto = trained when the ticket has them",
                       choices=("auto", "trained", "init"))
    data_root: str | None = arg(None, "dense, torchscript, onnx: folder holding the ticket's dataset, whose "
                                      "standardization goes into the file (default: the one the ticket records)")


def export(configs: dict, options: ExportOptions, log) -> dict:
    return export_ticket(options.ticket, options.format, options.out, half=options.half, weights=options.weights,
                         data_root=options.data_root)


def export_text(result: dict, options) -> str:
    inputs = ("raw inputs (pixels in [0, 1]; it standardizes them itself)" if result["inputs"] == "raw"
              else "inputs standardized with the training set's mean and std, as the ticket")
    return (f"wrote {result['out']}: {result['format']}{' fp16' if result['half'] else ''}, {result['bytes']:,} bytes, "
            f"{result['parameters']:,} stored parameters; takes {inputs}")


@dataclass(kw_only=True)
class InferOptions(Output):
    file: str = arg(help="ticket file or exported model", positional=True)
    dataset: str | None = arg(None, "dataset (default: the one the file records)")
    data_root: str | None = arg(None, "folder holding datasets")
    test_subset: int | None = arg(None, "only the first N test examples")
    batch_size: int = arg(256, "inference batch size")
    path: str = arg("auto", "linear-layer kernels: auto = the fastest of dense and CSR, measured per layer",
                    choices=PATHS)
    torchscript: bool = arg(False, TORCHSCRIPT_HELP, bare=True)


def infer(configs: dict, options: InferOptions, log) -> dict:
    return run_inference(options.file, options.dataset, options.data_root, options.test_subset, options.batch_size,
                         options.path, torchscript=options.torchscript)


def infer_text(result: dict, options) -> str:
    paths = ", ".join(f"{name} {d['path']}" for name, d in result["linear_paths"].items()) or "as stored"
    return (f"test accuracy {result['test_accuracy']:.4f} on {result['examples']} {result['dataset']} examples "
            f"({result['kind']}, {result['examples_per_second']:,.0f} examples/s at batch {result['batch_size']}; "
            f"linear layers: {paths})")


@dataclass(kw_only=True)
class ProfileOptions(Output):
    ticket: str = arg(help="ticket file", positional=True)
    batch_sizes: str = arg("1,64,256", "comma-separated batch sizes to time")
    repeats: int = arg(30, "timed calls per measurement (median reported)")

    def check(self):
        checks.integer("--repeats", self.repeats, 1, MAX_REPEATS)
        try:
            check_profile_request(self.batches(), self.repeats)
        except TicketlabError as exc:
            raise TicketlabError(f"bad --batch-sizes {self.batch_sizes!r}: {exc}") from None

    def batches(self) -> tuple[int, ...]:
        try:
            return tuple(int(b) for b in str(self.batch_sizes).split(","))
        except ValueError:
            raise TicketlabError(f"bad --batch-sizes {self.batch_sizes!r}: give positive integers such as "
                                 "1,64,256") from None


def profile(configs: dict, options: ProfileOptions, log) -> dict:
    return profile_ticket(options.ticket, options.batches(), options.repeats)


COMMANDS = (
    Command("export", "write a ticket as a compact file, a shrunk dense model, TorchScript or ONNX",
            "compact: packed mask bits + live values (lossless; --half stores them in float16). dense: the network "
            "with dead neurons and channels removed physically, as a safetensors state_dict. torchscript / onnx: "
            "that shrunk network for deployment (onnx needs pip install 'ticketlab[onnx]'). dense, torchscript and "
            "onnx take raw inputs (pixels in [0, 1]): the ticket's input standardization is folded in.",
            ExportOptions, export, export_text),
    Command("infer", "test accuracy of a ticket or export, on the fastest path",
            "Evaluate a ticket, compact, dense, TorchScript or ONNX file on a test set; each Linear layer runs on a "
            "CSR sparse kernel when that is measured faster at the batch size, else dense.",
            InferOptions, infer, infer_text),
    Command("profile", "size, FLOPs and speed of a ticket against its dense original",
            "Parameters, non-zeros, FLOPs per example (live weights only), the file size of every export format, "
            "and latency/throughput (median after warm-up) of the dense original, the masked ticket, the shrunk "
            "network and the sparse path.",
            ProfileOptions, profile, lambda result, options: profile_table(result)),
)
