//! TfIdfVectorizer of integer tokens: per n-gram length and skip distance, every window of the rows (a gather of
//! known positions) compared with every pool n-gram; the matches counted, mapped to their output columns by a known
//! 0/1 matrix, and weighted.

use super::*;

pub(super) fn tfidf(b: &mut Builder, ctx: &Ctx, x: &Value) -> Result<Value, String> {
    let base = ctx.base();
    let pool = ctx.ints("pool_int64s").filter(|p| !p.is_empty()).ok_or("needs pool_int64s (string pools are not supported)")?;
    let counts = ctx.ints("ngram_counts").ok_or("has no ngram_counts")?;
    let indexes = ctx.ints("ngram_indexes").ok_or("has no ngram_indexes")?;
    let (min_n, max_n, max_skip) = (ctx.int("min_gram_length", 1).max(1) as usize, ctx.int("max_gram_length", 1) as usize, ctx.int("max_skip_count", 0).max(0) as usize);
    let weights: Option<Vec<f32>> = ctx.attr("weights").map(|a| a.floats.clone()).filter(|w| !w.is_empty());
    let shape = const_shape(b, x)?;
    let (rows, len) = match shape[..] {
        [len] => (None, len as usize),
        [rows, len] => (Some(rows), len as usize),
        _ => return Err("needs tokens of shape [C] or [N, C]".into()),
    };
    let columns = indexes.iter().map(|&i| i as usize + 1).max().unwrap_or(0);
    let x2 = reshape(b, &format!("{base}.rows"), x, vec![Dim::from(rows.unwrap_or(1)), Dim::from(len as u64)])?;
    let mut total: Option<Value> = None;
    let mut first = 0usize;
    for (k, &start) in counts.iter().enumerate() {
        let n = k + 1;
        let end = counts.get(k + 1).map_or(pool.len(), |&e| e as usize);
        let grams = (end.saturating_sub(start as usize)) / n;
        let (ids, first_id) = (grams, first);
        first += grams;
        if n < min_n || n > max_n || ids == 0 {
            continue;
        }
        let pool_n: Vec<Dim> = pool[start as usize..start as usize + ids * n].iter().map(|&v| int_dim(v)).collect();
        let pool_n = Value::Known(Known::new(Elem::INT64, vec![1, 1, ids, n], Values::Int(pool_n)));
        // Unigrams are counted once; longer n-grams at every skip distance.
        let distances = if n == 1 { 1 } else { max_skip + 1 };
        let mut matches: Option<Value> = None;
        for d in 1..=distances {
            let span = d * (n - 1) + 1;
            if span > len {
                break;
            }
            let windows = len - span + 1;
            let positions: Vec<Dim> = (0..windows).flat_map(|s| (0..n).map(move |i| Dim::from((s + i * d) as u64))).collect();
            let positions = Value::Known(Known::new(Elem::INT64, vec![windows, n], Values::Int(positions)));
            let name = format!("{base}.n{n}d{d}");
            let grams_at = gather(b, &format!("{name}.windows"), &x2, &positions, 1)?;
            let grams_at = reshape(b, &format!("{name}.column"), &grams_at, vec![Dim::from(rows.unwrap_or(1)), Dim::from(windows as u64), Dim::from(1u64), Dim::from(n as u64)])?;
            let equal = compare(b, &format!("{name}.equal"), CompareOp::Eq, &grams_at, &pool_n)?;
            let equal = cast(b, &format!("{name}.equal_f32"), &equal, Elem::FLOAT)?;
            let id = b.node(&equal, &format!("{name}.equal_f32"))?;
            let agree = Value::Node { id: b.add(&format!("{name}.agree"), Op::Reduce { kind: ReduceKind::Sum, axes: vec![3], keep_dims: false }, &[id])?, elem: Elem::FLOAT };
            let whole = compare(b, &format!("{name}.whole"), CompareOp::Eq, &agree, &scalar(Elem::FLOAT, n as f64))?;
            let whole = cast(b, &format!("{name}.whole_f32"), &whole, Elem::FLOAT)?;
            let id = b.node(&whole, &format!("{name}.whole_f32"))?;
            let found = Value::Node { id: b.add(&format!("{name}.found"), Op::Reduce { kind: ReduceKind::Sum, axes: vec![1], keep_dims: false }, &[id])?, elem: Elem::FLOAT };
            matches = Some(match matches {
                None => found,
                Some(m) => binary(b, &format!("{name}.sum"), BinaryOp::Add, &m, &found)?,
            });
        }
        let Some(matches) = matches else { continue };
        // Pool n-gram i counts in output column ngram_indexes[its position in the pool].
        let mut to_columns = vec![0f32; ids * columns];
        for i in 0..ids {
            let column = *indexes.get(first_id + i).ok_or("fewer ngram_indexes than pool n-grams")? as usize;
            to_columns[i * columns + column] = 1.0;
        }
        let to_columns = Value::Known(Known::new(Elem::FLOAT, vec![ids, columns], Values::F32(to_columns)));
        let counted = matmul(b, &format!("{base}.n{n}.columns"), &matches, &to_columns, false, false)?;
        total = Some(match total {
            None => counted,
            Some(t) => binary(b, &format!("{base}.n{n}.total"), BinaryOp::Add, &t, &counted)?,
        });
    }
    let total = match total {
        Some(t) => t,
        None => Value::Known(Known::new(Elem::FLOAT, vec![rows.unwrap_or(1) as usize, columns], Values::F32(vec![0.0; rows.unwrap_or(1) as usize * columns]))),
    };
    let weight = |b: &mut Builder, v: &Value| -> Result<Value, String> {
        match &weights {
            Some(w) => binary(b, &format!("{base}.weighted"), BinaryOp::Mul, v, &Value::Known(Known::new(Elem::FLOAT, vec![w.len()], Values::F32(w.clone())))),
            None => Ok(v.clone()),
        }
    };
    let y = match ctx.string("mode").as_deref().unwrap_or("TF") {
        "TF" => total,
        "IDF" => {
            let present = compare(b, &format!("{base}.present"), CompareOp::Gt, &total, &scalar(Elem::FLOAT, 0.0))?;
            let present = cast(b, &format!("{base}.present_f32"), &present, Elem::FLOAT)?;
            weight(b, &present)?
        }
        "TFIDF" => weight(b, &total)?,
        other => return Err(format!("mode {other:?} is not supported")),
    };
    let out: Vec<Dim> = rows.into_iter().map(Dim::from).chain([Dim::from(columns as u64)]).collect();
    reshape(b, &base, &y, out)
}
