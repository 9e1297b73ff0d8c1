//! Einsum as existing ops: each operand's repeated labels become diagonals (a mask and a sum), labels no other
//! operand or the output names are summed, the operands are contracted left to right by batched MatMuls (shared
//! labels the rest still need are batch axes, the others are reduced), and the result is transposed to the output.

use super::*;

/// A value with one label per axis.
struct Term {
    value: Value,
    labels: Vec<char>,
}

pub(super) fn einsum(b: &mut Builder, ctx: &Ctx, inputs: &[Option<Value>]) -> Result<Value, String> {
    let base = ctx.base();
    let equation: String = ctx.string("equation").ok_or("has no equation")?.chars().filter(|c| !c.is_whitespace()).collect();
    let operands: Vec<&Value> = inputs.iter().flatten().collect();
    if let Some(v) = operands.iter().find(|v| !elem(v).is_float()) {
        return Err(format!("Einsum of {} is not supported (floats only)", elem(v).name()));
    }
    let (lhs, rhs) = match equation.split_once("->") {
        Some((l, r)) => (l, Some(r)),
        None => (equation.as_str(), None),
    };
    let specs: Vec<&str> = lhs.split(',').collect();
    if specs.len() != operands.len() {
        return Err(format!("the equation names {} operands, the node has {}", specs.len(), operands.len()));
    }
    // The axes an ellipsis stands for get the labels '0', '1', …, aligned from the right across operands.
    let ranks: Vec<usize> = operands.iter().map(|v| b.shape(v).len()).collect();
    let ellipsis_rank = specs.iter().zip(&ranks).filter(|(s, _)| s.contains("...")).map(|(s, &r)| (r + 3).saturating_sub(s.len())).max().unwrap_or(0);
    if ellipsis_rank > 10 {
        return Err("an ellipsis over more than 10 axes".into());
    }
    let ellipsis = |n: usize| (ellipsis_rank - n..ellipsis_rank).map(|i| char::from(b'0' + i as u8));
    let labels_of = |spec: &str, rank: usize| -> Result<Vec<char>, String> {
        let (before, after) = spec.split_once("...").unwrap_or((spec, ""));
        let letters = before.len() + after.len();
        if !before.chars().chain(after.chars()).all(|c| c.is_ascii_alphabetic()) || letters > rank || (letters < rank && before.len() == spec.len()) {
            return Err(format!("`{spec}` does not label an operand of rank {rank}"));
        }
        Ok(before.chars().chain(ellipsis(rank - letters)).chain(after.chars()).collect())
    };
    let mut terms: Vec<Term> = Vec::new();
    let mut sizes: HashMap<char, Dim> = HashMap::new();
    for ((spec, &rank), v) in specs.iter().zip(&ranks).zip(&operands) {
        let labels = labels_of(spec, rank)?;
        for (l, d) in labels.iter().zip(b.shape(v)) {
            if sizes.insert(*l, d.clone()).is_some_and(|other| other != d) {
                return Err(format!("label {l} has lengths {} and {d} (broadcasting is not supported)", sizes[l]));
            }
        }
        terms.push(Term { value: (*v).clone(), labels });
    }
    let output: Vec<char> = match rhs {
        Some(spec) if spec.contains("...") => labels_of(spec, spec.len() - 3 + ellipsis_rank)?,
        Some(_) if ellipsis_rank > 0 => return Err("an ellipsis in the operands but not in the output is not supported".into()),
        Some(spec) => labels_of(spec, spec.len())?,
        None => {
            // Implicit: the ellipsis' axes, then the labels used once, in order.
            let all: Vec<char> = terms.iter().flat_map(|t| t.labels.clone()).collect();
            let mut once: Vec<char> = all.iter().copied().filter(|c| c.is_ascii_alphabetic() && all.iter().filter(|d| *d == c).count() == 1).collect();
            once.sort();
            ellipsis(ellipsis_rank).chain(once).collect()
        }
    };
    if let Some(l) = output.iter().find(|l| !sizes.contains_key(l)) {
        return Err(format!("the output label {l} names no operand axis"));
    }

    for (i, t) in terms.iter_mut().enumerate() {
        diagonals(b, &format!("{base}.in{i}"), t, &sizes)?;
    }
    let mut acc: Option<Term> = None;
    for i in 0..terms.len() {
        // Labels still needed: the output's and those of the operands after this one.
        let keep: HashSet<char> = output.iter().chain(terms[i + 1..].iter().flat_map(|t| &t.labels)).copied().collect();
        let mut t = Term { value: terms[i].value.clone(), labels: terms[i].labels.clone() };
        let needed: HashSet<char> = keep.iter().chain(acc.iter().flat_map(|a| &a.labels)).copied().collect();
        sum_out(b, &format!("{base}.sum{i}"), &mut t, &needed)?;
        acc = Some(match acc {
            None => t,
            Some(a) => contract(b, &format!("{base}.contract{i}"), a, t, &keep, &sizes)?,
        });
    }
    let mut result = acc.ok_or("needs an operand")?;
    sum_out(b, &format!("{base}.sum"), &mut result, &output.iter().copied().collect())?;
    let perm: Vec<usize> = output.iter().map(|l| result.labels.iter().position(|m| m == l).expect("every output label is kept")).collect();
    transpose(b, &base, &result.value, &perm)
}

/// Replaces each label repeated within a term by its diagonal: the value times the identity on the two axes, summed
/// over the second.
fn diagonals(b: &mut Builder, base: &str, t: &mut Term, sizes: &HashMap<char, Dim>) -> Result<(), String> {
    while let Some((p, q)) = (0..t.labels.len()).flat_map(|p| (p + 1..t.labels.len()).map(move |q| (p, q))).find(|&(p, q)| t.labels[p] == t.labels[q]) {
        let n = sizes[&t.labels[p]].as_const().ok_or("a diagonal of a symbolic axis is not supported")? as usize;
        let mut shape = vec![1usize; t.labels.len()];
        shape[p] = n;
        shape[q] = n;
        let eye = Known::new(Elem::FLOAT, shape, Values::F32((0..n * n).map(|i| if i / n == i % n { 1.0 } else { 0.0 }).collect()));
        let masked = binary(b, &format!("{base}.diag"), BinaryOp::Mul, &t.value, &Value::Known(eye))?;
        t.value = reduce_sum(b, &format!("{base}.diag_sum"), &masked, vec![q])?;
        t.labels.remove(q);
    }
    Ok(())
}

/// Sums the axes whose labels are not in `keep`.
fn sum_out(b: &mut Builder, base: &str, t: &mut Term, keep: &HashSet<char>) -> Result<(), String> {
    let axes: Vec<usize> = (0..t.labels.len()).filter(|&a| !keep.contains(&t.labels[a])).collect();
    if axes.is_empty() {
        return Ok(());
    }
    t.value = reduce_sum(b, base, &t.value, axes.clone())?;
    t.labels = t.labels.iter().enumerate().filter(|(a, _)| !axes.contains(a)).map(|(_, &l)| l).collect();
    Ok(())
}

fn reduce_sum(b: &mut Builder, base: &str, v: &Value, axes: Vec<usize>) -> Result<Value, String> {
    let id = b.node(v, &format!("{base}.in"))?;
    Ok(Value::Node { id: b.add(base, Op::Reduce { kind: ReduceKind::Sum, axes, keep_dims: false }, &[id])?, elem: elem(v) })
}

/// x · y over their shared labels: those in `keep` are batch axes, the others are reduced; as one MatMul of
/// [batch…, x's own, shared] by [batch…, shared, y's own].
fn contract(b: &mut Builder, base: &str, x: Term, y: Term, keep: &HashSet<char>, sizes: &HashMap<char, Dim>) -> Result<Term, String> {
    let shared: Vec<char> = x.labels.iter().copied().filter(|l| y.labels.contains(l)).collect();
    let batch: Vec<char> = shared.iter().copied().filter(|l| keep.contains(l)).collect();
    let reduced: Vec<char> = shared.iter().copied().filter(|l| !keep.contains(l)).collect();
    let x_own: Vec<char> = x.labels.iter().copied().filter(|l| !shared.contains(l)).collect();
    let y_own: Vec<char> = y.labels.iter().copied().filter(|l| !shared.contains(l)).collect();
    let size = |ls: &[char]| tfc_ir::dim::product(&ls.iter().map(|l| sizes[l].clone()).collect::<Vec<_>>());
    let arrange = |b: &mut Builder, t: &Term, order: &[&[char]], name: &str| -> Result<Value, String> {
        let all: Vec<char> = order.iter().flat_map(|ls| ls.iter().copied()).collect();
        let perm: Vec<usize> = all.iter().map(|l| t.labels.iter().position(|m| m == l).expect("a label of the term")).collect();
        let v = transpose(b, &format!("{base}.{name}"), &t.value, &perm)?;
        let mut shape: Vec<Dim> = batch.iter().map(|l| sizes[l].clone()).collect();
        shape.extend(order[1..].iter().map(|ls| size(ls)));
        reshape(b, &format!("{base}.{name}_matrix"), &v, shape)
    };
    let xm = arrange(b, &x, &[&batch, &x_own, &reduced], "x")?;
    let ym = arrange(b, &y, &[&batch, &reduced, &y_own], "y")?;
    let product = matmul(b, &format!("{base}.matmul"), &xm, &ym, false, false)?;
    let labels: Vec<char> = batch.iter().chain(&x_own).chain(&y_own).copied().collect();
    let value = reshape(b, base, &product, labels.iter().map(|l| sizes[l].clone()).collect())?;
    Ok(Term { value, labels })
}
