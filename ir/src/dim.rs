//! Symbolic dimensions and the integer expressions of the bundle manifest.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::{Add, Mul, Sub};

/// Values bound to the symbols of a graph for one run, e.g. `batch = 1, sequence = 12`.
pub type Env = BTreeMap<String, u64>;

/// A tensor dimension: a polynomial with integer coefficients over named symbols (`sequence`, `past + sequence`,
/// `batch*sequence`, `sequence - 1`). The canonical form makes equality structural. A dimension must not be
/// negative for the symbol values of a run; evaluation checks that.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dim {
    /// Monomial (sorted symbol names, repeated for powers) → nonzero coefficient. The empty monomial is the
    /// constant term.
    terms: BTreeMap<Vec<String>, i64>,
}

impl Dim {
    pub fn sym(name: &str) -> Dim {
        Dim { terms: BTreeMap::from([(vec![name.to_string()], 1)]) }
    }

    /// The value if the dimension has no symbols (None also for a negative constant).
    pub fn as_const(&self) -> Option<u64> {
        match self.terms.len() {
            0 => Some(0),
            1 => self.terms.get(&Vec::new()).and_then(|&c| u64::try_from(c).ok()),
            _ => None,
        }
    }

    /// The symbol's name if this dimension is exactly one symbol.
    pub fn as_sym(&self) -> Option<&str> {
        match self.terms.iter().next() {
            Some((m, 1)) if self.terms.len() == 1 && m.len() == 1 => Some(&m[0]),
            _ => None,
        }
    }

    pub fn symbols(&self) -> impl Iterator<Item = &str> {
        self.terms.keys().flatten().map(String::as_str)
    }

    pub fn eval(&self, env: &Env) -> Result<u64, String> {
        self.to_expr().eval(env).map_err(|e| format!("dimension `{self}`: {e}"))
    }

    /// The expression form: positive terms summed, minus the negative ones.
    pub fn to_expr(&self) -> Expr {
        let term = |m: &Vec<String>, c: u64| {
            let mut factors: Vec<Expr> = m.iter().map(|s| Expr::Sym(s.clone())).collect();
            if c != 1 || factors.is_empty() {
                factors.insert(0, Expr::Const(c));
            }
            Expr::product(factors)
        };
        let plus = Expr::sum(self.terms.iter().filter(|(_, c)| **c > 0).map(|(m, c)| term(m, c.unsigned_abs())).collect());
        let minus: Vec<Expr> = self.terms.iter().filter(|(_, c)| **c < 0).map(|(m, c)| term(m, c.unsigned_abs())).collect();
        if minus.is_empty() { plus } else { Expr::Sub(Box::new(plus), Box::new(Expr::sum(minus))) }
    }

    fn from_terms(terms: impl IntoIterator<Item = (Vec<String>, i64)>) -> Dim {
        let mut out = BTreeMap::new();
        for (m, c) in terms {
            *out.entry(m).or_insert(0) += c;
        }
        out.retain(|_, c| *c != 0);
        Dim { terms: out }
    }
}

impl From<u64> for Dim {
    fn from(v: u64) -> Dim {
        Dim::from_terms([(Vec::new(), i64::try_from(v).expect("dimension fits in i64"))])
    }
}

impl From<usize> for Dim {
    fn from(v: usize) -> Dim {
        Dim::from(v as u64)
    }
}

impl Add for &Dim {
    type Output = Dim;
    fn add(self, rhs: &Dim) -> Dim {
        Dim::from_terms(self.terms.iter().chain(&rhs.terms).map(|(m, c)| (m.clone(), *c)))
    }
}

impl Sub for &Dim {
    type Output = Dim;
    fn sub(self, rhs: &Dim) -> Dim {
        Dim::from_terms(self.terms.iter().map(|(m, c)| (m.clone(), *c)).chain(rhs.terms.iter().map(|(m, c)| (m.clone(), -c))))
    }
}

impl Mul for &Dim {
    type Output = Dim;
    fn mul(self, rhs: &Dim) -> Dim {
        Dim::from_terms(self.terms.iter().flat_map(|(ma, ca)| {
            rhs.terms.iter().map(move |(mb, cb)| {
                let mut m: Vec<String> = ma.iter().chain(mb).cloned().collect();
                m.sort();
                (m, ca * cb)
            })
        }))
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_expr())
    }
}

impl fmt::Debug for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Product of dimensions (the element count of a shape).
pub fn product(dims: &[Dim]) -> Dim {
    dims.iter().fold(Dim::from(1u64), |acc, d| &acc * d)
}

/// An unsigned integer expression over symbols, as stored in the manifest and evaluated by the runtimes.
///
/// JSON form: a number, a symbol name, or `[op, operand…]` with op one of `add`, `mul`, `max`, `sub`, `ceil_div`.
/// `sub` of a larger from a smaller value is an evaluation error, never a wrap-around.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Value", try_from = "Value")]
pub enum Expr {
    Const(u64),
    Sym(String),
    Add(Vec<Expr>),
    Mul(Vec<Expr>),
    Max(Vec<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    CeilDiv(Box<Expr>, Box<Expr>),
}

impl Expr {
    pub fn sum(terms: Vec<Expr>) -> Expr {
        Self::fold(terms, Expr::Add, |a, b| a + b, 0)
    }

    pub fn product(factors: Vec<Expr>) -> Expr {
        Self::fold(factors, Expr::Mul, |a, b| a * b, 1)
    }

    pub fn max(items: Vec<Expr>) -> Expr {
        let mut unique: Vec<Expr> = Vec::new();
        for e in items {
            if !unique.contains(&e) {
                unique.push(e);
            }
        }
        Self::fold(unique, Expr::Max, u64::max, 0)
    }

    pub fn ceil_div(a: Expr, b: Expr) -> Expr {
        match (&a, &b) {
            (Expr::Const(x), Expr::Const(y)) if *y != 0 => Expr::Const(x.div_ceil(*y)),
            (_, Expr::Const(1)) => a,
            _ => Expr::CeilDiv(Box::new(a), Box::new(b)),
        }
    }

    /// Folds the constant operands into one and flattens nested applications of the same operator.
    fn fold(items: Vec<Expr>, make: fn(Vec<Expr>) -> Expr, op: fn(u64, u64) -> u64, identity: u64) -> Expr {
        let mut constant = identity;
        let mut rest = Vec::new();
        for e in items {
            match e {
                Expr::Const(c) => constant = op(constant, c),
                other => {
                    let same_op = std::mem::discriminant(&other) == std::mem::discriminant(&make(Vec::new()));
                    match other {
                        Expr::Add(v) | Expr::Mul(v) | Expr::Max(v) if same_op => rest.extend(v),
                        other => rest.push(other),
                    }
                }
            }
        }
        let is_mul = matches!(make(Vec::new()), Expr::Mul(_));
        if is_mul && constant == 0 {
            return Expr::Const(0);
        }
        if constant != identity || rest.is_empty() {
            rest.insert(0, Expr::Const(constant));
        }
        if rest.len() == 1 { rest.pop().unwrap() } else { make(rest) }
    }

    pub fn eval(&self, env: &Env) -> Result<u64, String> {
        let all = |v: &Vec<Expr>| v.iter().map(|e| e.eval(env)).collect::<Result<Vec<u64>, String>>();
        Ok(match self {
            Expr::Const(c) => *c,
            Expr::Sym(s) => *env.get(s).ok_or_else(|| format!("symbol `{s}` has no value"))?,
            Expr::Add(v) => all(v)?.into_iter().try_fold(0u64, |a, b| a.checked_add(b)).ok_or("overflow")?,
            Expr::Mul(v) => all(v)?.into_iter().try_fold(1u64, |a, b| a.checked_mul(b)).ok_or("overflow")?,
            Expr::Max(v) => all(v)?.into_iter().max().unwrap_or(0),
            Expr::Sub(a, b) => {
                let (x, y) = (a.eval(env)?, b.eval(env)?);
                x.checked_sub(y).ok_or_else(|| format!("`{self}` is negative ({x} − {y})"))?
            }
            Expr::CeilDiv(a, b) => {
                let d = b.eval(env)?;
                if d == 0 {
                    return Err("division by zero".into());
                }
                a.eval(env)?.div_ceil(d)
            }
        })
    }

    fn op_name(&self) -> &'static str {
        match self {
            Expr::Add(_) => "add",
            Expr::Mul(_) => "mul",
            Expr::Max(_) => "max",
            Expr::CeilDiv(..) => "ceil_div",
            Expr::Sub(..) => "sub",
            Expr::Const(_) | Expr::Sym(_) => "",
        }
    }
}

impl From<u64> for Expr {
    fn from(v: u64) -> Expr {
        Expr::Const(v)
    }
}

impl From<&Dim> for Expr {
    fn from(d: &Dim) -> Expr {
        d.to_expr()
    }
}

impl From<Expr> for Value {
    fn from(e: Expr) -> Value {
        match e {
            Expr::Const(c) => Value::from(c),
            Expr::Sym(s) => Value::from(s),
            Expr::CeilDiv(ref a, ref b) | Expr::Sub(ref a, ref b) => {
                Value::Array(vec![e.op_name().into(), (**a).clone().into(), (**b).clone().into()])
            }
            Expr::Add(ref v) | Expr::Mul(ref v) | Expr::Max(ref v) => {
                let mut items = vec![Value::from(e.op_name())];
                items.extend(v.iter().cloned().map(Value::from));
                Value::Array(items)
            }
        }
    }
}

impl TryFrom<Value> for Expr {
    type Error = String;
    fn try_from(v: Value) -> Result<Expr, String> {
        match v {
            Value::Number(n) => n.as_u64().map(Expr::Const).ok_or_else(|| format!("expression constant {n} is not a u64")),
            Value::String(s) => Ok(Expr::Sym(s)),
            Value::Array(items) => {
                let (op, args) = items.split_first().ok_or("empty expression array")?;
                let args = args.iter().cloned().map(Expr::try_from).collect::<Result<Vec<_>, _>>()?;
                match (op.as_str(), args.len()) {
                    (Some("add"), _) => Ok(Expr::Add(args)),
                    (Some("mul"), _) => Ok(Expr::Mul(args)),
                    (Some("max"), _) => Ok(Expr::Max(args)),
                    (Some(name @ ("ceil_div" | "sub")), 2) => {
                        let mut it = args.into_iter();
                        let (a, b) = (Box::new(it.next().unwrap()), Box::new(it.next().unwrap()));
                        Ok(if name == "sub" { Expr::Sub(a, b) } else { Expr::CeilDiv(a, b) })
                    }
                    _ => Err(format!("unknown expression operator {op}")),
                }
            }
            other => Err(format!("not an expression: {other}")),
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |f: &mut fmt::Formatter<'_>, v: &[Expr], sep: &str| -> fmt::Result {
            for (i, e) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                match e {
                    Expr::Add(_) => write!(f, "({e})")?,
                    _ => write!(f, "{e}")?,
                }
            }
            Ok(())
        };
        match self {
            Expr::Const(c) => write!(f, "{c}"),
            Expr::Sym(s) => f.write_str(s),
            Expr::Add(v) => join(f, v, " + "),
            Expr::Mul(v) => join(f, v, "*"),
            Expr::Max(v) => {
                f.write_str("max(")?;
                join(f, v, ", ")?;
                f.write_str(")")
            }
            Expr::CeilDiv(a, b) => write!(f, "ceil({a} / {b})"),
            Expr::Sub(a, b) => write!(f, "{a} - ({b})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polynomials_are_canonical() {
        let s = Dim::sym("sequence");
        let b = Dim::sym("batch");
        assert_eq!(&(&s * &b) * &Dim::from(384u64), &(&Dim::from(384u64) * &b) * &s);
        assert_eq!(&s + &Dim::from(0u64), s);
        assert_eq!((&s * &Dim::from(2u64)).as_const(), None);
        assert_eq!(Dim::from(7u64).as_const(), Some(7));
        assert_eq!(s.as_sym(), Some("sequence"));
        let past = Dim::sym("past");
        assert_eq!(&(&past + &s) - &past, s);
        let last = &s - &Dim::from(1u64);
        let env = Env::from([("sequence".to_string(), 5u64)]);
        assert_eq!(last.eval(&env).unwrap(), 4);
        assert!((&Dim::from(1u64) - &s).eval(&env).is_err());
        let json = serde_json::to_string(&last.to_expr()).unwrap();
        assert_eq!(json, r#"["sub","sequence",1]"#);
    }

    #[test]
    fn expressions_round_trip_through_json() {
        let s = Dim::sym("sequence");
        let e = Expr::ceil_div(Expr::max(vec![(&(&s * &Dim::from(384u64)) + &Dim::from(1u64)).to_expr(), 8.into()]), 256.into());
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, r#"["ceil_div",["max",8,["add",1,["mul",384,"sequence"]]],256]"#);
        let back: Expr = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
        let env = Env::from([("sequence".to_string(), 3u64)]);
        assert_eq!(e.eval(&env).unwrap(), 5);
        assert_eq!(Expr::product(vec![4.into(), 0.into(), Expr::Sym("x".into())]), Expr::Const(0));
    }
}

/// Finds the symbol values that make each declared shape equal its actual shape, starting from the values in
/// `given` (symbols no input shape shows, like `past`), and checks them against the symbols' maxima. `shapes`
/// yields (input name, declared dims, actual dims).
pub fn bind_symbols<'a>(
    shapes: impl IntoIterator<Item = (&'a str, &'a [Expr], &'a [usize])>,
    given: &Env,
    max: &BTreeMap<String, u64>,
) -> Result<Env, String> {
    let shapes: Vec<_> = shapes.into_iter().collect();
    let mut env = given.clone();
    for (name, declared, actual) in &shapes {
        if declared.len() != actual.len() {
            return Err(format!("input `{name}` must have rank {}, got shape {actual:?}", declared.len()));
        }
        for (d, &a) in declared.iter().zip(*actual) {
            if let Expr::Sym(s) = d {
                match env.insert(s.clone(), a as u64) {
                    Some(prev) if prev != a as u64 => {
                        return Err(format!("input `{name}` gives `{s}` = {a}, but an earlier input gave {prev}"));
                    }
                    _ => {}
                }
            }
        }
    }
    for (name, declared, actual) in &shapes {
        for (d, &a) in declared.iter().zip(*actual) {
            let want = d.eval(&env).map_err(|e| format!("input `{name}`: {e}"))?;
            if want != a as u64 {
                return Err(format!("input `{name}` has shape {actual:?}, but its dimension `{d}` must be {want}"));
            }
        }
    }
    for (s, v) in &env {
        if *v == 0 && !given.contains_key(s) {
            return Err(format!("`{s}` must be at least 1"));
        }
        if let Some(m) = max.get(s)
            && v > m
        {
            return Err(format!("`{s}` = {v} is more than this model's limit of {m}"));
        }
    }
    Ok(env)
}
