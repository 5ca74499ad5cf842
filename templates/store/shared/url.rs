//! Database URLs in messages: the password of `scheme://user:password@host/db` is never printed.

/// The password of a `scheme://user:password@…` URL, if it has one.
fn password(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let (user, _) = authority.rsplit_once('@')?;
    user.split_once(':').map(|(_, password)| password).filter(|p| !p.is_empty())
}

/// A message about `url` as it may be printed: the URL's password never appears in it.
pub fn scrub(message: String, url: &str) -> String {
    match password(url) {
        Some(secret) => message.replace(secret, "***"),
        None => message,
    }
}

/// `scheme://user:secret@host/db` -> `scheme://user:***@host/db`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user, host)) if user.contains(':') => {
            let name = user.split(':').next().unwrap_or_default();
            format!("{scheme}://{name}:***@{host}{tail}")
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::{redact, scrub};

    #[test]
    fn passwords_never_show() {
        let url = "db://me:s3cret@127.0.0.1:5/x";
        assert_eq!(redact(url), "db://me:***@127.0.0.1:5/x");
        assert_eq!(scrub(format!("cannot log in as me with s3cret to {url}"), url), "cannot log in as me with *** to db://me:***@127.0.0.1:5/x");
        assert_eq!(redact("db://me@host/x"), "db://me@host/x");
        assert_eq!(scrub("no secret".to_string(), "db://me@host/x"), "no secret");
    }
}
