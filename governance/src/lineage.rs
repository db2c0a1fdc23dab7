//! Lineage: where a document's content came from (an import, a connector,
//! a copy of another document) and where it went (an export, a connector
//! sink), with who and when.
//!
//! Edges are stored as recorded (sled or PostgreSQL, beside the audit
//! trail) and [`graph`] walks them from a document in both directions, up
//! to a depth, for `GET /api/lineage/{document}`. The server records an
//! edge after the operation succeeded, next to its audit entry (the audit
//! entry is what proves the operation; lineage is the map).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::audit::is_plain_id;
use crate::store::StoreError;

/// A place content can be.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LineageNode {
    /// A document on this server.
    Document {
        /// Its full name (`acme/roadmap`).
        name: String,
    },
    /// Something outside: a file, a database table behind a connector, a
    /// SaaS object.
    External {
        /// The system (`upload`, `postgres-connector`, `s3`).
        system: String,
        /// What in it (`orders.csv`, `public.orders`, a URL).
        locator: String,
    },
}

impl LineageNode {
    /// A document.
    pub fn document(name: impl Into<String>) -> Self {
        LineageNode::Document { name: name.into() }
    }

    /// An external location.
    pub fn external(system: impl Into<String>, locator: impl Into<String>) -> Self {
        LineageNode::External {
            system: system.into(),
            locator: locator.into(),
        }
    }

    /// The key edges are stored under: `doc:<name>` or
    /// `ext:<system>:<locator>`.
    pub fn key(&self) -> String {
        match self {
            LineageNode::Document { name } => format!("doc:{name}"),
            LineageNode::External { system, locator } => format!("ext:{system}:{locator}"),
        }
    }
}

impl fmt::Display for LineageNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// How content moved along an edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Imported from a file or upload.
    Import,
    /// Pulled in by a connector.
    ConnectorSource,
    /// Copied from another document.
    Copy,
    /// Exported out of the server.
    Export,
    /// Pushed out by a connector.
    ConnectorSink,
}

/// One movement of content: `from` → `to`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageEdge {
    /// Where the content came from.
    pub from: LineageNode,
    /// Where it went.
    pub to: LineageNode,
    /// How.
    pub kind: EdgeKind,
    /// Who moved it ([`crate::audit::Actor::id`]).
    pub actor: String,
    /// When, in milliseconds since the epoch.
    pub at_ms: u64,
    /// Anything else (format, row counts, the connector's run id).
    pub details: serde_json::Value,
}

/// Why lineage could not be recorded or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A node id is empty, too long or holds a control character.
    #[error("invalid lineage node {0}")]
    InvalidNode(String),
    /// The edge does not fit its kind (an export must start at a
    /// document, an import must end at one, a copy joins two documents).
    #[error("a {kind:?} edge cannot go from {from} to {to}")]
    Shape {
        /// The edge kind.
        kind: EdgeKind,
        /// Its start.
        from: String,
        /// Its end.
        to: String,
    },
}

/// Durable storage of lineage edges. Implemented by both governance stores.
#[async_trait]
pub trait LineageStore: Send + Sync + 'static {
    /// Stores an edge.
    async fn record_edge(&self, edge: &LineageEdge) -> Result<(), StoreError>;

    /// Every edge from or to the node with this key ([`LineageNode::key`]),
    /// in recording order.
    async fn edges_touching(&self, node_key: &str) -> Result<Vec<LineageEdge>, StoreError>;
}

fn check_node(node: &LineageNode) -> Result<(), LineageError> {
    let ok = match node {
        LineageNode::Document { name } => is_plain_id(name),
        LineageNode::External { system, locator } => {
            is_plain_id(system) && is_plain_id(locator) && !system.contains(':')
        }
    };
    if ok {
        Ok(())
    } else {
        Err(LineageError::InvalidNode(node.key()))
    }
}

/// Validates and stores `edge`.
pub async fn record(store: &dyn LineageStore, edge: &LineageEdge) -> Result<(), LineageError> {
    check_node(&edge.from)?;
    check_node(&edge.to)?;
    let is_doc = |n: &LineageNode| matches!(n, LineageNode::Document { .. });
    let fits = match edge.kind {
        EdgeKind::Import | EdgeKind::ConnectorSource => is_doc(&edge.to),
        EdgeKind::Copy => is_doc(&edge.from) && is_doc(&edge.to),
        EdgeKind::Export | EdgeKind::ConnectorSink => is_doc(&edge.from),
    };
    if !fits {
        return Err(LineageError::Shape {
            kind: edge.kind,
            from: edge.from.key(),
            to: edge.to.key(),
        });
    }
    Ok(store.record_edge(edge).await?)
}

/// A document's lineage: every node reachable from it along edges in
/// either direction, within the depth limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LineageGraph {
    /// The document asked about.
    pub root: LineageNode,
    /// Every node, sorted, with its distance from the root.
    pub nodes: Vec<GraphNode>,
    /// Every edge between them, in recording order per node visited.
    pub edges: Vec<LineageEdge>,
    /// Whether the depth limit stopped the walk before it ran out of edges.
    pub truncated: bool,
}

/// A node of a [`LineageGraph`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphNode {
    /// The node.
    #[serde(flatten)]
    pub node: LineageNode,
    /// Its key, which edges refer to.
    pub id: String,
    /// Edges between it and the root.
    pub depth: u32,
}

/// Most nodes one graph holds, whatever the depth: bounds a request.
pub const MAX_GRAPH_NODES: usize = 10_000;

/// Walks the edges around `document`, both upstream (where its content came
/// from) and downstream (where it went), following them transitively up
/// to `max_depth` edges away.
pub async fn graph(
    store: &dyn LineageStore,
    document: &str,
    max_depth: u32,
) -> Result<LineageGraph, LineageError> {
    let root = LineageNode::document(document);
    check_node(&root)?;
    let mut depth_of: BTreeMap<String, (LineageNode, u32)> = BTreeMap::new();
    depth_of.insert(root.key(), (root.clone(), 0));
    let mut queue = VecDeque::from([(root.clone(), 0u32)]);
    let mut edges = Vec::new();
    let mut seen_edges = BTreeSet::new();
    let mut truncated = false;
    while let Some((node, depth)) = queue.pop_front() {
        for edge in store.edges_touching(&node.key()).await? {
            let other = if edge.from == node {
                &edge.to
            } else {
                &edge.from
            };
            let known = depth_of.contains_key(&other.key());
            if !known && (depth >= max_depth || depth_of.len() >= MAX_GRAPH_NODES) {
                truncated = true;
                continue;
            }
            // The same edge is met from both its ends.
            let identity = serde_json::to_string(&edge).expect("edges serialize");
            if seen_edges.insert(identity) {
                edges.push(edge.clone());
            }
            if !known {
                depth_of.insert(other.key(), (other.clone(), depth + 1));
                queue.push_back((other.clone(), depth + 1));
            }
        }
    }
    let nodes = depth_of
        .into_iter()
        .map(|(id, (node, depth))| GraphNode { node, id, depth })
        .collect();
    Ok(LineageGraph {
        root,
        nodes,
        edges,
        truncated,
    })
}
