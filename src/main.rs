//! `lrp`: the command line. Parses arguments, calls the library crates, maps errors to exit codes.

mod commands;
mod inputs;
mod photos;
mod shipped;
mod text;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Layer-wise Relevance Propagation: explain why a neural network decided what it did.
#[derive(Parser)]
#[command(name = "lrp", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train an MLP, CNN or row-sequential LSTM on an IDX dataset folder (MNIST, Fashion-MNIST, …) and save it.
    Train(commands::train::TrainArgs),
    /// Show a model's layers, shapes and parameter count; with --data, its test accuracy.
    Info(commands::info::InfoArgs),
    /// Run a model forward: logits for an .npy input or a dataset split.
    Predict(commands::predict::PredictArgs),
    /// Explain a model's decision: relevance of every input feature under an LRP rule or baseline.
    Explain(commands::explain::ExplainArgs),
    /// Explain a whole dataset in parallel under one or more rules (resumable, shardable).
    Batch(commands::batch::BatchArgs),
    /// What hidden channels stand for (Concept Relevance Propagation): each sample's relevance and activation per
    /// channel of a layer over a dataset, and each channel's reference samples (resumable, shardable).
    Concepts(commands::concepts::ConceptsArgs),
    /// Compare rules by faithfulness: region perturbation (pixel flipping) and AOPC, against a random order.
    Eval(commands::eval::EvalArgs),
    /// Browse explanations in the terminal: digits or photos and their heatmaps, rule by rule, model by model.
    View(commands::view::ViewArgs),
    /// Convert a model (e.g. .onnx) to the native format.
    Convert(commands::convert::ConvertArgs),
    /// Make photos into the exact tensor a model gets (resize, crop, normalize) and write it as .npy.
    Prepare(commands::prepare::PrepareArgs),
}

fn main() -> ExitCode {
    // Behave like other Unix tools when the reader of our output goes away (`lrp explain … | head`):
    // end quietly on SIGPIPE instead of panicking on a failed print.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Freed chunk buffers are kept for reuse instead of being mapped afresh (see the function).
    lrp_batch::keep_freed_memory();
    // A full disk or device behind stdout (`lrp info > /dev/full`) makes `println!` panic: say so and exit 1 instead.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if let Some(reason) = message.strip_prefix("failed printing to stdout: ") {
            eprintln!("error: cannot write the output: {reason}");
            std::process::exit(1);
        }
        default_hook(info);
    }));
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(a) => commands::train::run(a),
        Command::Info(a) => commands::info::run(a),
        Command::Predict(a) => commands::predict::run(a),
        Command::Convert(a) => commands::convert::run(a),
        Command::Explain(a) => commands::explain::run(a),
        Command::Batch(a) => commands::batch::run(a),
        Command::Concepts(a) => commands::concepts::run(a),
        Command::Eval(a) => commands::eval::run(a),
        Command::View(a) => commands::view::run(a),
        Command::Prepare(a) => commands::prepare::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", text::error_chain(&e));
            // Another lrp holds the output folder: EX_TEMPFAIL (75), so a scheduler can tell "try again later" from
            // a failure (Slurm marks exit 1 FAILED and an afterok job never starts).
            let busy = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<lrp_batch::BatchError>(),
                    Some(lrp_batch::BatchError::Busy { .. })
                )
            });
            ExitCode::from(if busy { 75 } else { 1 })
        }
    }
}
