//! `loc3r-serve`: command-line entry point of the runtime.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loc3r-serve", version, about = "Run Loc3R-VLM bundles: localisation and spatial QA on videos")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the runtime environment: which ONNX Runtime library is loaded and its build.
    Doctor {
        /// Print machine-readable JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // Die quietly on a closed pipe (`loc3r-export inspect B | head`) instead of panicking.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let info = match loc3r::ort_env::init() {
        Ok(info) => info,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Command::Doctor { json } => {
            if json {
                let v = serde_json::json!({"onnxruntime": {"library": info.library, "build_info": info.build_info}});
                println!("{v}");
            } else {
                println!("onnxruntime library: {}", info.library.display());
                println!("{}", info.build_info);
            }
        }
    }
    ExitCode::SUCCESS
}
