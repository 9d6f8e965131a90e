//! Developer tool: `cargo run -p bbolt --example bbolt_tool -- dump|check|stats FILE`.

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: bbolt_tool dump|check|stats FILE");
        std::process::exit(2);
    }
    let opts = bbolt::OpenOptions::read_only();
    let code = match args[1].as_str() {
        "dump" => match bbolt::Db::open(&args[2], opts) {
            Ok(db) => {
                let stdout = std::io::stdout();
                let mut w = std::io::BufWriter::new(stdout.lock());
                match bbolt::dump::write_dump(&db, &mut w).and_then(|()| {
                    w.flush()
                        .map_err(|e| bbolt::Error::InvalidArgument(e.to_string()))
                }) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("{e}");
                        1
                    }
                }
            }
            Err(e) => {
                eprintln!("{e}");
                2
            }
        },
        _ => {
            eprintln!("unknown command");
            2
        }
    };
    std::process::exit(code);
}
