//! `etcd-restore completions SHELL` and `etcd-restore man DIR`: generated from the same clap
//! definitions as the parser, so they cannot drift from the real flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to generate for; install the output where the shell looks, e.g.
    /// `etcd-restore completions bash > /etc/bash_completion.d/etcd-restore`.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Directory to write `etcd-restore.1` and one page per subcommand
    /// (`etcd-restore-restore.1`, `etcd-restore-db-check.1`, ...) into.
    #[arg(value_name = "DIR")]
    out_dir: PathBuf,
}

pub fn completions(args: &CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let name = cmd.get_name().to_string();
    clap_complete::generate(args.shell, &mut cmd, name, &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub fn man(args: &ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    let written = write_pages(cmd, &args.out_dir)?;
    for p in written {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// One page for the command and each (nested) subcommand, named like git's
/// (`etcd-restore-db-check.1`) so `man etcd-restore-db-check` finds it.
fn write_pages(cmd: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut cmd = cmd;
    cmd.build();
    let mut out = Vec::new();
    let mut stack = vec![(cmd.get_name().to_string(), cmd.clone())];
    while let Some((name, c)) = stack.pop() {
        for sub in c.get_subcommands().filter(|s| s.get_name() != "help") {
            stack.push((format!("{name}-{}", sub.get_name()), sub.clone()));
        }
        let page = c
            .clone()
            .display_name(name.clone())
            .bin_name(
                name.replace('-', " ")
                    .replacen("etcd restore", "etcd-restore", 1),
            );
        let mut buf = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut buf)
            .with_context(|| format!("rendering the man page of {name}"))?;
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, buf).with_context(|| format!("writing {}", path.display()))?;
        out.push(path);
    }
    out.sort();
    Ok(out)
}
