//! The dataflow graph: nodes are ops with one output each, edges carry values from producer to consumer.

use crate::{Dim, InputDefault, Op, TensorType, Weight, WeightId};
use petgraph::Direction;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use std::collections::BTreeMap;

pub type NodeId = NodeIndex;

#[derive(Clone, Debug)]
pub struct Node {
    /// Unique, human-readable (importers use the framework's names, e.g. `encoder.layer.0.attention`).
    pub name: String,
    pub op: Op,
    pub ty: TensorType,
}

/// A named symbol of the graph's shapes with the largest value the graph is built for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub max: u64,
}

#[derive(Clone, Debug, thiserror::Error)]
#[error("{node} ({op}): {message}")]
pub struct GraphError {
    pub node: String,
    pub op: &'static str,
    pub message: String,
}

/// A typed dataflow graph. Edge weights are operand positions, so a node's inputs are ordered.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    dag: StableDiGraph<Node, usize>,
    pub inputs: Vec<NodeId>,
    pub outputs: Vec<(String, NodeId)>,
    pub weights: Vec<Weight>,
    pub symbols: Vec<Symbol>,
    /// Free-form facts about the model (architecture, source) that go into the manifest.
    pub metadata: BTreeMap<String, String>,
    /// Decisions made while building the graph that the user should hear of (e.g. a context length lowered to fit).
    pub notes: Vec<String>,
}

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    pub fn symbol(&mut self, name: &str, max: u64) -> Dim {
        match self.symbols.iter_mut().find(|s| s.name == name) {
            Some(s) => s.max = s.max.min(max),
            None => self.symbols.push(Symbol { name: name.to_string(), max }),
        }
        Dim::sym(name)
    }

    pub fn input(&mut self, name: &str, ty: TensorType, default: Option<InputDefault>) -> NodeId {
        let id = self.dag.add_node(Node { name: name.to_string(), op: Op::Input { name: name.to_string(), default }, ty });
        self.inputs.push(id);
        id
    }

    /// A tensor kept across runs (see `Op::State`); `ty` must have constant dims.
    pub fn state(&mut self, name: &str, ty: TensorType) -> NodeId {
        self.dag.add_node(Node { name: name.to_string(), op: Op::State { name: name.to_string() }, ty })
    }

    pub fn weight(&mut self, weight: Weight) -> NodeId {
        let ty = TensorType::new(weight.dtype, weight.shape.iter().map(|&d| Dim::from(d)).collect());
        let name = weight.name.clone();
        let id = WeightId(self.weights.len());
        self.weights.push(weight);
        self.dag.add_node(Node { name, op: Op::Weight(id), ty })
    }

    /// Adds an op applied to `inputs`, inferring its output type.
    pub fn add(&mut self, name: impl Into<String>, op: Op, inputs: &[NodeId]) -> Result<NodeId, GraphError> {
        let name = name.into();
        let types: Vec<&TensorType> = inputs.iter().map(|&i| &self.dag[i].ty).collect();
        let ty = op.infer(&types).map_err(|message| GraphError { node: name.clone(), op: op.kind(), message })?;
        let id = self.dag.add_node(Node { name, op, ty });
        for (pos, &src) in inputs.iter().enumerate() {
            self.dag.add_edge(src, id, pos);
        }
        Ok(id)
    }

    pub fn output(&mut self, name: &str, node: NodeId) {
        self.outputs.push((name.to_string(), node));
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.dag[id]
    }

    pub fn node_ids(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.dag.node_indices()
    }

    pub fn len(&self) -> usize {
        self.dag.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.dag.node_count() == 0
    }

    /// The node's operands in order.
    pub fn inputs_of(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(usize, NodeId)> =
            self.dag.edges_directed(id, Direction::Incoming).map(|e| (*e.weight(), e.source())).collect();
        edges.sort();
        edges.into_iter().map(|(_, n)| n).collect()
    }

    pub fn users_of(&self, id: NodeId) -> Vec<NodeId> {
        let mut users: Vec<NodeId> = self.dag.neighbors_directed(id, Direction::Outgoing).collect();
        users.sort();
        users.dedup();
        users
    }

    pub fn weight_of(&self, id: NodeId) -> Option<&Weight> {
        match self.dag[id].op {
            Op::Weight(w) => Some(&self.weights[w.0]),
            _ => None,
        }
    }

    /// Replaces the weight of a weight node by one of the same shape (the dtype may change, e.g. when quantized).
    pub fn set_weight(&mut self, id: NodeId, weight: Weight) {
        let Op::Weight(w) = self.dag[id].op else { panic!("{} is not a weight node", self.dag[id].name) };
        assert_eq!(weight.shape, self.weights[w.0].shape, "the new weight of {} has another shape", self.dag[id].name);
        self.dag[id].ty.dtype = weight.dtype;
        self.weights[w.0] = weight;
    }

    /// Nodes in an order where every node comes after its operands; ties keep insertion order, so the order (and
    /// everything generated from it) is deterministic. A cycle is an error naming a node on it.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, GraphError> {
        let mut indegree: BTreeMap<NodeId, usize> = BTreeMap::new();
        for id in self.dag.node_indices() {
            indegree.insert(id, self.dag.edges_directed(id, Direction::Incoming).count());
        }
        let mut ready: std::collections::BTreeSet<NodeId> =
            indegree.iter().filter(|(_, d)| **d == 0).map(|(n, _)| *n).collect();
        let mut order = Vec::with_capacity(indegree.len());
        while let Some(n) = ready.pop_first() {
            order.push(n);
            for e in self.dag.edges_directed(n, Direction::Outgoing) {
                let d = indegree.get_mut(&e.target()).unwrap();
                *d -= 1;
                if *d == 0 {
                    ready.insert(e.target());
                }
            }
        }
        if order.len() != indegree.len() {
            let stuck = indegree.iter().find(|(n, d)| **d > 0 && !order.contains(n)).map(|(n, _)| *n).unwrap();
            let node = &self.dag[stuck];
            return Err(GraphError { node: node.name.clone(), op: node.op.kind(), message: "lies on a cycle".into() });
        }
        Ok(order)
    }

    /// Makes every use of `old` a use of `new` (graph outputs included). `old` stays, unused.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let uses: Vec<(NodeId, usize, petgraph::stable_graph::EdgeIndex)> =
            self.dag.edges_directed(old, Direction::Outgoing).map(|e| (e.target(), *e.weight(), e.id())).collect();
        for (target, pos, edge) in uses {
            self.dag.remove_edge(edge);
            self.dag.add_edge(new, target, pos);
        }
        for (_, o) in &mut self.outputs {
            if *o == old {
                *o = new;
            }
        }
    }

    /// Removes a node and its edges. Graph inputs are never removed.
    pub fn remove(&mut self, id: NodeId) {
        if !self.inputs.contains(&id) {
            self.dag.remove_node(id);
        }
    }

    /// Weights that no node refers to any more are dropped from the table (ids are renumbered).
    pub fn compact_weights(&mut self) {
        let mut used: Vec<(usize, NodeId)> = self
            .dag
            .node_indices()
            .filter_map(|n| match self.dag[n].op {
                Op::Weight(w) => Some((w.0, n)),
                _ => None,
            })
            .collect();
        used.sort();
        let old = std::mem::take(&mut self.weights);
        for (new_index, (old_index, node)) in used.into_iter().enumerate() {
            self.weights.push(old[old_index].clone());
            self.dag[node].op = Op::Weight(WeightId(new_index));
        }
    }

    pub fn symbol_max(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|s| s.name == name).map(|s| s.max)
    }
}
