//! The HTML pages and the stylesheet: built in, each overridable by a file in `--templates=DIR`.
//!
//! Templates are plain text with `{{name}}` placeholders. Every value is HTML-escaped before it
//! is substituted (see [`Html`]), so a user named `<script>` is shown, not run. Placeholders a
//! template does not use are simply not there; unknown ones are left as written, which makes a
//! typo in an override visible on the page instead of silently blank.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Every template, with its built-in text.
const BUILTIN: [(&str, &str); 9] = [
    ("header.html", include_str!("../templates/header.html")),
    ("footer.html", include_str!("../templates/footer.html")),
    ("login.html", include_str!("../templates/login.html")),
    ("greeting.html", include_str!("../templates/greeting.html")),
    ("time.html", include_str!("../templates/time.html")),
    ("logout.html", include_str!("../templates/logout.html")),
    ("about.html", include_str!("../templates/about.html")),
    ("message.html", include_str!("../templates/message.html")),
    ("style.css", include_str!("../templates/style.css")),
];

/// Text that is safe to put in a page as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Html(String);

impl Html {
    /// Escapes `text` for HTML element content and double-quoted attribute values (our
    /// templates quote attributes with `"`, so `'` stays readable: "C'mon", "O'Brien").
    pub fn escape(text: &str) -> Html {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                c => out.push(c),
            }
        }
        Html(out)
    }

    /// Markup written by us, not derived from any input.
    fn trusted(markup: &str) -> Html {
        Html(markup.to_string())
    }
}

/// A `--templates` folder that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("templates folder {path} is not a folder")]
    NotAFolder { path: PathBuf },
    #[error("cannot read templates folder {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read template {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The templates in use.
#[derive(Debug, Clone)]
pub struct Templates {
    texts: HashMap<&'static str, String>,
    /// Names taken from the override folder, for the start-up log line.
    overridden: Vec<&'static str>,
}

impl Templates {
    pub fn builtin() -> Templates {
        let texts = BUILTIN
            .iter()
            .map(|(n, t)| (*n, (*t).to_string()))
            .collect();
        Templates {
            texts,
            overridden: Vec::new(),
        }
    }

    /// The built-ins, with each file of `dir` named like a template replacing it.
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let meta = std::fs::metadata(dir).map_err(|source| TemplateError::ReadDir {
            path: dir.to_path_buf(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(TemplateError::NotAFolder {
                path: dir.to_path_buf(),
            });
        }
        let mut t = Templates::builtin();
        for (name, _) in BUILTIN {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    t.texts.insert(name, text);
                    t.overridden.push(name);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(TemplateError::ReadFile { path, source }),
            }
        }
        Ok(t)
    }

    pub fn overridden(&self) -> &[&'static str] {
        &self.overridden
    }

    pub fn stylesheet(&self) -> &str {
        self.text("style.css")
    }

    /// The home page for someone we do not know: the login form.
    pub fn login_page(&self) -> String {
        self.page("Welcome", None, self.render("login.html", &[]))
    }

    /// The home page for someone we know.
    pub fn greeting_page(&self, name: &str) -> String {
        let body = self.render("greeting.html", &[("name", Html::escape(name))]);
        self.page("Welcome", None, body)
    }

    /// "The time is now … (… UTC)", and ", NAME" for someone we know.
    pub fn time_page(&self, local: &str, utc: &str, name: Option<&str>) -> String {
        let greeting = name.map_or(Html::trusted(""), |n| {
            Html(format!(", {}", Html::escape(n).0))
        });
        let vars = [
            ("local", Html::escape(local)),
            ("utc", Html::escape(utc)),
            ("greeting", greeting),
        ];
        self.page("Time", None, self.render("time.html", &vars))
    }

    /// The good-bye page, which sends the browser home after 10 s.
    pub fn logout_page(&self) -> String {
        let refresh = Html::trusted("<meta http-equiv=\"refresh\" content=\"10; url=/\">\n");
        self.page("Good-bye", Some(refresh), self.render("logout.html", &[]))
    }

    pub fn about_page(&self) -> String {
        self.page("About Us", None, self.render("about.html", &[]))
    }

    /// A one-sentence page, e.g. "C'mon, I need a name.".
    pub fn message_page(&self, title: &str, message: &str) -> String {
        let body = self.render("message.html", &[("message", Html::escape(message))]);
        self.page(title, None, body)
    }

    /// Header + body + footer.
    fn page(&self, title: &str, head: Option<Html>, body: String) -> String {
        let head = head.unwrap_or(Html::trusted(""));
        let header = self.render(
            "header.html",
            &[("title", Html::escape(title)), ("head", head)],
        );
        let version = Html::escape(env!("CARGO_PKG_VERSION"));
        let footer = self.render("footer.html", &[("version", version)]);
        header + &body + &footer
    }

    fn text(&self, name: &str) -> &str {
        self.texts.get(name).map_or("", String::as_str)
    }

    fn render(&self, name: &str, vars: &[(&str, Html)]) -> String {
        render(self.text(name), vars)
    }
}

/// Replaces each `{{key}}` of `template` whose key is in `vars`; leaves other text as is.
fn render(template: &str, vars: &[(&str, Html)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close) => {
                let key = after[..close].trim();
                match vars.iter().find(|(k, _)| *k == key) {
                    Some((_, value)) => out.push_str(&value.0),
                    None => out.push_str(&rest[open..open + 2 + close + 2]),
                }
                rest = &after[close + 2..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_substitutes_known_keys_only() {
        let vars = [("a", Html::escape("x")), ("b", Html::escape("<y>"))];
        assert_eq!(
            render("{{a}}-{{ b }}-{{c}}-{{a", &vars),
            "x-&lt;y&gt;-{{c}}-{{a"
        );
        assert_eq!(render("no placeholders", &vars), "no placeholders");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            Html::escape(r#"<a href="x">'&'</a>"#).0,
            "&lt;a href=&quot;x&quot;&gt;'&amp;'&lt;/a&gt;"
        );
    }

    #[test]
    fn time_page_shape() {
        let t = Templates::builtin();
        let anon = t.time_page("3:04:05 PM", "15:04:05", None);
        assert!(
            anon.contains(
                r#"The time is now <span class="time">3:04:05 PM</span> (15:04:05 UTC)."#
            ),
            "{anon}"
        );
        let named = t.time_page("3:04:05 PM", "15:04:05", Some("Ada <3"));
        assert!(named.contains("(15:04:05 UTC), Ada &lt;3."), "{named}");
    }

    #[test]
    fn every_page_has_the_menu_and_stylesheet() {
        let t = Templates::builtin();
        for page in [
            t.login_page(),
            t.greeting_page("x"),
            t.about_page(),
            t.logout_page(),
            t.message_page("t", "m"),
        ] {
            for link in [
                r#"href="/">Home"#,
                r#"href="/time">Time"#,
                r#"href="/logout">Logout"#,
                r#"href="/about">About Us"#,
                "/css/style.css",
            ] {
                assert!(page.contains(link), "{link} missing from {page}");
            }
            assert!(!page.contains("{{"), "unfilled placeholder in {page}");
        }
        assert!(t.logout_page().contains(r#"content="10; url=/""#));
        assert!(t.login_page().contains("What is your name, Earthling?"));
    }

    #[test]
    fn folder_overrides_single_templates() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("about.html"), "<p>We are {{nobody}}.</p>").expect("write");
        std::fs::write(dir.path().join("unrelated.txt"), "ignored").expect("write");
        let t = Templates::load(dir.path()).expect("load");
        assert_eq!(t.overridden(), ["about.html"]);
        assert!(t.about_page().contains("<p>We are {{nobody}}.</p>"));
        assert_eq!(t.stylesheet(), Templates::builtin().stylesheet());
    }

    #[test]
    fn bad_folders_are_errors_naming_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = Templates::load(&missing).expect_err("missing");
        assert!(err.to_string().contains("nope"), "{err}");
        let file = dir.path().join("file");
        std::fs::write(&file, "x").expect("write");
        let err = Templates::load(&file).expect_err("not a folder");
        assert!(matches!(err, TemplateError::NotAFolder { .. }), "{err}");
    }
}
