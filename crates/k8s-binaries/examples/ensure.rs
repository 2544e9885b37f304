//! Builds (or checks the cache of) binaries for one minor: `cargo run -p k8s-binaries
//! --example ensure -- 1.29 [all]`. `cargo xtask cluster up` does this too; this is for
//! warming the cache alone.

use k8s_binaries::{Binary, BuildSpec};

fn main() {
    let mut args = std::env::args().skip(1);
    let minor = args.next().unwrap_or_else(|| "1.29".into());
    let binaries = match args.next().as_deref() {
        Some("all") => Binary::ALL,
        _ => Binary::CONTROL_PLANE,
    };
    let pin = match pins::KubePin::find(&minor) {
        Ok(pin) => pin,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let started = std::time::Instant::now();
    match k8s_binaries::ensure(&BuildSpec::new(pin, binaries), &mut |p| eprintln!("{p}")) {
        Ok(built) => {
            eprintln!("done in {:.0}s", started.elapsed().as_secs_f64());
            println!("{}", built.dir.display());
        }
        Err(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("error: {text}");
            std::process::exit(1);
        }
    }
}
