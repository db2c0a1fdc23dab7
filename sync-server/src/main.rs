//! The `sync-server` binary: configuration, logging, signals; the server
//! itself is the library's [`sync_server::run`].

use anyhow::Context;
use clap::Parser;
use sync_server::config::{AuditCommand, Cli, Command, Config, StoreKind};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli)?;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    if let Some(Command::Config) = cli.command {
        println!("{config:#?}");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Headroom for yrs, which recurses on nested content.
        .thread_stack_size(8 << 20)
        .build()
        .context("starting the runtime")?;
    if let Some(Command::Audit(command)) = cli.command {
        return runtime.block_on(audit(config, command));
    }
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let address = listener.local_addr()?;
        let store = match config.store {
            StoreKind::Sled => format!("sled in {}", config.data_dir.display()),
            StoreKind::Postgres => format!("postgres, schema {}", config.database_schema),
        };
        tracing::info!(
            %store,
            "serving on http://{address} (WebSocket: ws://{address}/ws/{{document}})"
        );
        let shutdown = CancellationToken::new();
        tokio::spawn(sync_server::shutdown::on_signal(shutdown.clone()));
        sync_server::run(config, listener, shutdown).await?;
        tracing::info!("stopped cleanly");
        Ok(())
    })
}

/// `sync-server audit ...`: opens the audit store the configuration
/// names, runs the command with a progress spinner, and exits 1 when
/// verification finds a bad entry.
async fn audit(config: Config, command: AuditCommand) -> anyhow::Result<()> {
    use governance::audit::{Actor, AuditQuery, ExportFormat, VerifyScope};
    use governance::cli::Progress;

    let guard = sync_server::guard::Guard::open(&config).await?;
    let log = guard.governance().audit().clone();
    let operator = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    let actor = Actor::user(format!("cli:{operator}"));
    let result = match command {
        AuditCommand::Verify { workspace } => {
            let scope = workspace.map_or(VerifyScope::All, VerifyScope::Workspace);
            let mut out = std::io::stdout();
            let report =
                governance::cli::verify(&log, &scope, &actor, &mut out, Progress::Stderr).await?;
            if report.ok() {
                Ok(())
            } else {
                guard.close().await;
                std::process::exit(1);
            }
        }
        AuditCommand::Export {
            format,
            workspace,
            user,
            document,
            from,
            to,
            output,
        } => {
            let format: ExportFormat = format
                .parse()
                .map_err(|_| anyhow::anyhow!("format must be jsonl or csv, not {format:?}"))?;
            let query = AuditQuery {
                workspace,
                actor: user,
                document,
                from_ms: from,
                to_ms: to,
                ..AuditQuery::default()
            };
            let mut out: Box<dyn std::io::Write + Send> = match output {
                Some(path) => Box::new(
                    std::fs::File::create(&path)
                        .with_context(|| format!("creating {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            governance::cli::export(&log, query, format, &actor, &mut out, Progress::Stderr)
                .await
                .map(drop)
                .map_err(anyhow::Error::from)
        }
    };
    guard.close().await;
    result
}
