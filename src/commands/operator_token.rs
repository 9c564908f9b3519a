//! `switchboard token create|revoke`: per-operator bearer tokens for the admin API. The
//! token is made here, printed once, and only its SHA-256 goes to the control plane (as an
//! `OperatorToken` resource, which only an admin may write or delete).

use crate::cli::{TokenAction, TokenArgs};
use crate::commands::client::{connect, runtime};
use anyhow::Context;
use sha2::{Digest, Sha256};
use switchboard_proto::v1::{ApplyRequest, DeleteRequest, SourceFile};

/// Runs `switchboard token ...`.
pub fn run(args: &TokenArgs) -> anyhow::Result<i32> {
    runtime()?.block_on(async {
        let mut client = connect(&args.server).await?;
        match &args.action {
            TokenAction::Create { name, role } => {
                use ring::rand::SecureRandom;
                let mut bytes = [0u8; 32];
                ring::rand::SystemRandom::new()
                    .fill(&mut bytes)
                    .map_err(|_| anyhow::anyhow!("no system randomness for a token"))?;
                let token = format!("sbt_{}", hex::encode(bytes));
                let digest = hex::encode(Sha256::digest(token.as_bytes()));
                let yaml = format!(
                    "apiVersion: switchboard.dev/v1\nkind: OperatorToken\nmetadata:\n  name: {name}\nspec:\n  role: {role}\n  sha256: {digest}\n"
                );
                let response = client
                    .apply(ApplyRequest {
                        files: vec![SourceFile {
                            name: format!("token {name}"),
                            content: yaml,
                        }],
                        dry_run: false,
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("cannot create the token: {}", s.message()))?
                    .into_inner();
                if let Some(e) = response.errors.first() {
                    anyhow::bail!("cannot create the token: {}: {}", e.field, e.message);
                }
                eprintln!("operatortoken/{name} ({role}) created; the token is shown once, and the control plane keeps only its SHA-256:");
                println!("{token}");
                Ok(0)
            }
            TokenAction::Revoke { name } => {
                client
                    .delete(DeleteRequest {
                        kind: "OperatorToken".into(),
                        name: name.clone(),
                    })
                    .await
                    .map_err(|s| anyhow::anyhow!("cannot revoke the token: {}", s.message()))
                    .context("revoke")?;
                println!("operatortoken/{name} revoked");
                Ok(0)
            }
        }
    })
}
