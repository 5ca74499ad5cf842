//! Macro calls printed as code. prettyplease prints a macro's body as the tokens it holds
//! (`json!({ "id" : r.get::< _, String > (0) ?, … })`, `log!(Info, "…", x.map_err(| e | e))`),
//! which no person would write. Before printing, [`disguise`] turns each call whose body is a
//! list of expressions into a function call, and each `json!` object into a struct literal, under
//! marker names; after printing, [`undisguise`] turns the markers back. prettyplease then lays
//! the bodies out as it lays out any call or struct literal.

use anyhow::{bail, Result};
use proc_macro2::{Delimiter, Span, TokenStream, TokenTree};
use quote::ToTokens;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::visit::Visit;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, Ident, LitStr, MacroDelimiter, Stmt, Token};

/// `name!(a, b)` is printed as `name__m(a, b)`. prettyplease ends the arguments of a call it
/// breaks over lines with a comma; that comma is taken out again, as a person writes macro calls
/// (and as `json!` requires after a lone expression).
const CALL: &str = "__m";
/// A `json!` object `{ "k": v }` is printed as the struct literal `__J { __k0__: v }`.
const OBJECT: &str = "__J";
/// `__k<n>__` stands for the n-th object key seen in the file.
const KEY: &str = "__k";

/// The object keys of a file, in the order their markers were numbered.
pub struct Keys(Vec<String>);

/// Rewrites every macro call in `file` whose body reads as expressions (or as `json!` values).
pub fn disguise(file: &mut syn::File) -> Keys {
    let mut keys = Keys(Vec::new());
    keys.visit_file_mut(file);
    keys
}

/// Turns the markers of a printed file back into macro calls and object keys. `source` is the
/// text before printing: a marker it already holds would be turned into something else.
pub fn undisguise(printed: &str, keys: &Keys, source: &str) -> Result<String> {
    for marker in [format!("{CALL}("), format!("{OBJECT} "), KEY.to_string()] {
        if source.contains(&marker) {
            bail!("the rendered code holds `{marker}` itself, which marks a macro call while it is printed");
        }
    }
    let mut lines: Vec<String> = printed.lines().map(str::to_string).collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    for open in 0..lines.len() {
        if !lines[open].ends_with(&format!("{CALL}(")) {
            continue;
        }
        // The closing parenthesis starts the first later line at the opening line's indentation.
        let close = (open + 1..lines.len())
            .find(|&i| indent(&lines[i]) == indent(&lines[open]) && lines[i].trim_start().starts_with(')'));
        if let Some(last) = close.map(|c| c - 1).filter(|&l| l > open && lines[l].ends_with(',')) {
            lines[last].pop();
        }
    }
    let mut out = (lines.join("\n") + "\n").replace(&format!("{CALL}("), "!(").replace(&format!("{OBJECT} "), "");
    for (n, key) in keys.0.iter().enumerate().rev() {
        out = out.replace(&format!("{KEY}{n}__"), key);
    }
    Ok(out)
}

/// The body of every macro call in `file`, in order, as its tokens one by one with each trailing
/// comma left out (printing adds them to lists it breaks over lines): [`undisguise`]'s output
/// must hold the same bodies as the text it was parsed from.
pub fn bodies(file: &syn::File) -> Vec<String> {
    struct Bodies(Vec<String>);
    impl<'ast> Visit<'ast> for Bodies {
        fn visit_macro(&mut self, mac: &'ast syn::Macro) {
            let mut text = format!("{}!", mac.path.to_token_stream());
            tokens(mac.tokens.clone(), &mut text);
            self.0.push(text);
        }
    }
    fn tokens(stream: TokenStream, out: &mut String) {
        let trees: Vec<TokenTree> = stream.into_iter().collect();
        let end = match trees.last() {
            Some(TokenTree::Punct(p)) if p.as_char() == ',' => trees.len() - 1,
            _ => trees.len(),
        };
        for tree in &trees[..end] {
            match tree {
                TokenTree::Group(g) => {
                    let (open, close) = match g.delimiter() {
                        Delimiter::Parenthesis => ("(", ")"),
                        Delimiter::Bracket => ("[", "]"),
                        Delimiter::Brace => ("{", "}"),
                        Delimiter::None => ("", ""),
                    };
                    out.push_str(open);
                    tokens(g.stream(), out);
                    out.push_str(close);
                }
                TokenTree::Punct(p) => out.push(p.as_char()),
                other => out.push_str(&other.to_string()),
            }
            out.push(' ');
        }
    }
    let mut bodies = Bodies(Vec::new());
    bodies.visit_file(file);
    bodies.0
}

impl Keys {
    /// The call a macro's body reads as, or `None` to leave the macro as it is: bodies in `[]` or
    /// `{}` (`vec![…]`, `thread_local! {…}`), bodies that are not expressions, and `matches!`,
    /// whose pattern may also read as an expression but would not print as the same tokens.
    fn call(&mut self, mac: &syn::Macro) -> Option<Expr> {
        if !matches!(mac.delimiter, MacroDelimiter::Paren(_)) {
            return None;
        }
        let mut path = mac.path.clone();
        let last = path.segments.last_mut()?;
        if last.ident == "matches" {
            return None;
        }
        let args: Punctuated<Expr, Token![,]> = if last.ident == "json" {
            let value = (|input: ParseStream| self.value(input)).parse2(mac.tokens.clone()).ok()?;
            Punctuated::from_iter([value])
        } else {
            Punctuated::parse_terminated.parse2(mac.tokens.clone()).ok()?
        };
        last.ident = Ident::new(&format!("{}{CALL}", last.ident), last.ident.span());
        Some(Expr::Call(syn::ExprCall {
            attrs: Vec::new(),
            func: Box::new(Expr::Path(syn::ExprPath { attrs: Vec::new(), qself: None, path })),
            paren_token: Default::default(),
            args,
        }))
    }

    /// One `json!` value: an object, an array, or a Rust expression.
    fn value(&mut self, input: ParseStream) -> syn::Result<Expr> {
        if input.peek(syn::token::Brace) {
            let content;
            syn::braced!(content in input);
            return self.object(&content);
        }
        if input.peek(syn::token::Bracket) {
            let content;
            syn::bracketed!(content in input);
            let mut elems = Punctuated::new();
            while !content.is_empty() {
                elems.push_value(self.value(&content)?);
                if content.is_empty() {
                    break;
                }
                elems.push_punct(content.parse::<Token![,]>()?);
            }
            return Ok(Expr::Array(syn::ExprArray { attrs: Vec::new(), bracket_token: Default::default(), elems }));
        }
        input.parse()
    }

    /// A `json!` object whose keys are string literals, as a struct literal of key markers.
    fn object(&mut self, input: ParseStream) -> syn::Result<Expr> {
        let mut fields = Punctuated::new();
        while !input.is_empty() {
            let key: LitStr = input.parse()?;
            input.parse::<Token![:]>()?;
            let expr = self.value(input)?;
            let member = Ident::new(&format!("{KEY}{}__", self.0.len()), Span::call_site());
            self.0.push(key.token().to_string());
            fields.push(syn::FieldValue {
                attrs: Vec::new(),
                member: syn::Member::Named(member),
                colon_token: Some(Default::default()),
                expr,
            });
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(Expr::Struct(syn::ExprStruct {
            attrs: Vec::new(),
            qself: None,
            path: Ident::new(OBJECT, Span::call_site()).into(),
            brace_token: Default::default(),
            fields,
            dot2_token: None,
            rest: None,
        }))
    }
}

impl VisitMut for Keys {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if let Expr::Macro(m) = expr {
            if let Some(call) = self.call(&m.mac) {
                *expr = call;
            }
        }
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        if let Stmt::Macro(m) = stmt {
            if let Some(call) = self.call(&m.mac) {
                *stmt = Stmt::Expr(call, m.semi_token);
            }
        }
        visit_mut::visit_stmt_mut(self, stmt);
    }
}
