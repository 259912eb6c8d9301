//! Document commands: `get`, `delete` (by ids or by filter), `count`, `scroll`, `export` (to the
//! files `load` reads back) and `set-payload`.

use std::io::{Read, Seek, Write};
use std::path::PathBuf;

use clap::Args;
use metavec_api::pb;
use metavec_api::pb::documents_client::DocumentsClient;
use serde_json::Value;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use super::{channel, outln, status, CliResult, Remote};

/// The longest payload a table row shows before cutting it (`--json` prints it whole).
const TABLE_PAYLOAD_CHARS: usize = 80;

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Collection to read from.
    pub collection: String,
    /// Ids of the documents to show.
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// Also print each document's stored vectors (in --json as nested arrays; in the table as
    /// their shape and first values).
    #[arg(long)]
    pub vectors: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Collection to delete from.
    pub collection: String,
    /// Ids of the documents to delete (unknown ids are not an error).
    #[arg(required_unless_present = "filter", conflicts_with = "filter")]
    pub ids: Vec<String>,
    /// Delete every document whose payload passes this filter (JSON, see `metavec search
    /// --filter`) instead of naming ids.
    #[arg(long)]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct CountArgs {
    /// Collection to count.
    pub collection: String,
    /// Count only the documents whose payload passes this filter (JSON).
    #[arg(long)]
    pub filter: Option<String>,
}

#[derive(Debug, Args)]
pub struct ScrollArgs {
    /// Collection to list.
    pub collection: String,
    /// Only documents whose payload passes this filter (JSON).
    #[arg(long)]
    pub filter: Option<String>,
    /// Documents per page (1..=10000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
    /// Start after this id (a previous page's "next cursor").
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow the cursors to the last page instead of printing one page.
    #[arg(long)]
    pub all: bool,
    /// Print payloads too.
    #[arg(long)]
    pub with_payload: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Collection to export.
    pub collection: String,
    /// Directory to write docs.npy ([N, stored vectors, D] f32), ids.txt and payloads.jsonl
    /// into: the files `metavec load --npy --ids --payload` reads back.
    #[arg(long)]
    pub out: PathBuf,
    /// Export only the documents whose payload passes this filter (JSON).
    #[arg(long)]
    pub filter: Option<String>,
    /// Documents fetched per request.
    #[arg(long, default_value_t = 256)]
    pub page: u32,
}

#[derive(Debug, Args)]
pub struct SetPayloadArgs {
    /// Collection of the documents.
    pub collection: String,
    /// Ids of the documents to update (each must exist: an unknown id updates nothing).
    #[arg(required = true)]
    pub ids: Vec<String>,
    /// The new payload, a JSON object ("" clears it).
    #[arg(long)]
    pub payload: String,
    /// Set the object's top-level keys in the stored payload and keep the others (default:
    /// replace the stored payload).
    #[arg(long)]
    pub merge: bool,
}

async fn client(
    remote: &Remote,
) -> Result<
    DocumentsClient<InterceptedService<Channel, impl tonic::service::Interceptor + Clone>>,
    String,
> {
    Ok(
        DocumentsClient::with_interceptor(channel(remote).await?, remote.interceptor()?)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX),
    )
}

/// A payload as JSON: the stored object, or null for none.
pub fn payload_value(p: &str) -> Value {
    if p.is_empty() {
        return Value::Null;
    }
    serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.to_string()))
}

/// A payload cut to fit a table row.
pub fn payload_cell(p: &str) -> String {
    if p.chars().count() <= TABLE_PAYLOAD_CHARS {
        return p.to_string();
    }
    let cut: String = p.chars().take(TABLE_PAYLOAD_CHARS - 1).collect();
    format!("{cut}…")
}

fn rows(v: &pb::Vectors) -> Vec<Vec<f32>> {
    let dim = v.dim.max(1) as usize;
    v.values.chunks(dim).map(<[f32]>::to_vec).collect()
}

pub async fn get(remote: &Remote, a: GetArgs) -> CliResult {
    let mut c = client(remote).await?;
    let r = c
        .get(pb::GetRequest {
            collection: a.collection.clone(),
            ids: a.ids.clone(),
            ids_only: false,
        })
        .await
        .map_err(status)?
        .into_inner();
    if !remote.json {
        outln!("{:<32} {:<12} payload", "id", "vectors");
    }
    for d in &r.documents {
        let v = d.vectors.clone().unwrap_or_default();
        if remote.json {
            let mut o = serde_json::json!({"id": d.id, "payload": payload_value(&d.payload)});
            if a.vectors {
                o["vectors"] = serde_json::json!(rows(&v));
            }
            outln!("{o}");
        } else {
            outln!(
                "{:<32} {:<12} {}",
                d.id,
                format!("{} x {}", v.count, v.dim),
                payload_cell(&d.payload)
            );
            if a.vectors {
                for (i, row) in rows(&v).iter().enumerate() {
                    let head: Vec<String> = row.iter().take(6).map(|x| format!("{x:.4}")).collect();
                    outln!(
                        "  vector {i:<3} [{}{}]",
                        head.join(", "),
                        if row.len() > 6 { ", ..." } else { "" }
                    );
                }
            }
        }
    }
    if !r.missing_ids.is_empty() {
        return Err(format!(
            "{} of {} ids not found in {}: {}",
            r.missing_ids.len(),
            a.ids.len(),
            a.collection,
            r.missing_ids.join(", ")
        )
        .into());
    }
    Ok(())
}

pub async fn delete(remote: &Remote, a: DeleteArgs) -> CliResult {
    let mut c = client(remote).await?;
    let deleted = match a.filter {
        Some(filter) => {
            c.delete_by_filter(pb::DeleteByFilterRequest {
                collection: a.collection.clone(),
                filter,
            })
            .await
        }
        None => {
            c.delete(pb::DeleteRequest {
                collection: a.collection.clone(),
                ids: a.ids,
            })
            .await
        }
    }
    .map_err(status)?
    .into_inner()
    .deleted;
    if remote.json {
        outln!("{}", serde_json::json!({"deleted": deleted}));
    } else {
        outln!("deleted {deleted} documents from {}", a.collection);
    }
    Ok(())
}

pub async fn count(remote: &Remote, a: CountArgs) -> CliResult {
    let mut c = client(remote).await?;
    let n = c
        .count(pb::CountRequest {
            collection: a.collection,
            filter: a.filter.unwrap_or_default(),
        })
        .await
        .map_err(status)?
        .into_inner()
        .count;
    if remote.json {
        outln!("{}", serde_json::json!({"count": n}));
    } else {
        outln!("{n}");
    }
    Ok(())
}

pub async fn scroll(remote: &Remote, a: ScrollArgs) -> CliResult {
    let mut c = client(remote).await?;
    let mut cursor = a.cursor.unwrap_or_default();
    if !remote.json {
        outln!("{:<32} payload", "id");
    }
    loop {
        let page = c
            .scroll(pb::ScrollRequest {
                collection: a.collection.clone(),
                cursor: cursor.clone(),
                limit: a.limit,
                filter: a.filter.clone().unwrap_or_default(),
                with_vectors: false,
                with_payload: a.with_payload,
            })
            .await
            .map_err(status)?
            .into_inner();
        for d in &page.documents {
            if remote.json {
                let mut o = serde_json::json!({"id": d.id});
                if a.with_payload {
                    o["payload"] = payload_value(&d.payload);
                }
                outln!("{o}");
            } else {
                outln!("{:<32} {}", d.id, payload_cell(&d.payload));
            }
        }
        cursor = page.next_cursor;
        if cursor.is_empty() || !a.all {
            break;
        }
    }
    if !a.all && !cursor.is_empty() {
        if remote.json {
            outln!("{}", serde_json::json!({"next_cursor": cursor}));
        } else {
            outln!("next page: --cursor {cursor}");
        }
    }
    Ok(())
}

/// Pages through the collection with vectors and payloads, spooling vectors to a temporary
/// file (the count is known only at the end), then writes docs.npy, ids.txt, payloads.jsonl.
pub async fn export(remote: &Remote, a: ExportArgs) -> CliResult {
    let mut c = client(remote).await?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("{}: {e}", a.out.display()))?;
    let io = |e: std::io::Error| format!("{}: {e}", a.out.display());
    let mut spool = tempfile::tempfile_in(&a.out).map_err(io)?;
    let mut ids =
        std::io::BufWriter::new(std::fs::File::create(a.out.join("ids.txt")).map_err(io)?);
    let mut payloads =
        std::io::BufWriter::new(std::fs::File::create(a.out.join("payloads.jsonl")).map_err(io)?);
    let (mut n, mut shape) = (0u64, None::<(u32, u32)>);
    let mut cursor = String::new();
    loop {
        let page = c
            .scroll(pb::ScrollRequest {
                collection: a.collection.clone(),
                cursor: cursor.clone(),
                limit: a.page.clamp(1, 10_000),
                filter: a.filter.clone().unwrap_or_default(),
                with_vectors: true,
                with_payload: true,
            })
            .await
            .map_err(status)?
            .into_inner();
        for d in page.documents {
            let v = d.vectors.unwrap_or_default();
            let s = (v.count, v.dim);
            if *shape.get_or_insert(s) != s {
                return Err(format!(
                    "document {:?} has {} x {} vectors, the ones before {} x {} (the collection was \
                     compacted to a budget during the export): export again",
                    d.id, s.0, s.1, shape.unwrap_or_default().0, shape.unwrap_or_default().1
                )
                .into());
            }
            let bytes: Vec<u8> = v.values.iter().flat_map(|x| x.to_le_bytes()).collect();
            spool.write_all(&bytes).map_err(io)?;
            writeln!(ids, "{}", d.id).map_err(io)?;
            // One line per document, "{}" for none, so line i is document i's.
            let p = if d.payload.is_empty() {
                "{}"
            } else {
                d.payload.as_str()
            };
            writeln!(payloads, "{p}").map_err(io)?;
            n += 1;
        }
        cursor = page.next_cursor;
        if cursor.is_empty() {
            break;
        }
    }
    ids.flush().map_err(io)?;
    payloads.flush().map_err(io)?;
    let (count, dim) = shape.unwrap_or((0, 0));
    spool.rewind().map_err(io)?;
    let file = std::fs::File::create(a.out.join("docs.npy")).map_err(io)?;
    use npyz::WriterBuilder;
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(&[n, count as u64, dim as u64])
        .writer(std::io::BufWriter::new(file))
        .begin_nd()
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let got = spool.read(&mut buf).map_err(io)?;
        if got == 0 {
            break;
        }
        w.extend(
            buf[..got]
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        )
        .map_err(|e| e.to_string())?;
    }
    w.finish().map_err(|e| e.to_string())?;
    if remote.json {
        outln!(
            "{}",
            serde_json::json!({"documents": n, "vectors": count, "dim": dim, "out": a.out})
        );
    } else {
        outln!(
            "exported {n} documents ({count} x {dim} vectors each) to {}: docs.npy, ids.txt, payloads.jsonl",
            a.out.display()
        );
    }
    Ok(())
}

pub async fn set_payload(remote: &Remote, a: SetPayloadArgs) -> CliResult {
    let mut c = client(remote).await?;
    let r = c
        .set_payload(pb::SetPayloadRequest {
            collection: a.collection.clone(),
            ids: a.ids,
            payload: a.payload,
            merge: a.merge,
        })
        .await
        .map_err(status)?
        .into_inner();
    if remote.json {
        outln!("{}", serde_json::json!({"updated": r.updated}));
    } else {
        outln!(
            "updated the payload of {} documents in {}",
            r.updated,
            a.collection
        );
    }
    Ok(())
}
