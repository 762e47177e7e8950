//! Reading a seelog XML config: quick-xml events, and a stack of the elements we are inside.
use std::collections::HashMap;
use std::path::PathBuf;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use super::{Level, LogConfig, Output, ParseError};

/// Parses a config's text.
pub(super) fn parse(text: &str) -> Result<LogConfig, ParseError> {
    Parser {
        text,
        reader: quick_xml::Reader::from_str(text),
    }
    .run()
}

/// Root attributes seelog uses to pick its logger type; meaningless here, harmless to accept.
const IGNORED_ROOT_ATTRIBUTES: [&str; 5] = [
    "type",
    "asyncinterval",
    "mininterval",
    "maxinterval",
    "critmsgcount",
];

/// `<rollingfile>`'s rolling options: accepted, but the file is simply appended to.
const ROLLING_ATTRIBUTES: [&str; 9] = [
    "formatid",
    "type",
    "maxsize",
    "maxrolls",
    "datepattern",
    "namemode",
    "archivetype",
    "archivepath",
    "archiveexploded",
];

struct Parser<'a> {
    text: &'a str,
    reader: quick_xml::Reader<&'a [u8]>,
}

/// Where we are in the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Inside `<seelog>`.
    Root,
    /// Inside `<outputs>` or a wrapper around outputs.
    Outputs,
    /// Inside something whose content is ignored (`<formats>`), or a leaf output.
    Skip,
}

impl Parser<'_> {
    fn run(mut self) -> Result<LogConfig, ParseError> {
        let mut min_level = Level::Trace;
        let mut outputs = Vec::new();
        let mut seen_outputs = false;
        let mut seen_root = false;
        // (element name, scope inside it)
        let mut stack: Vec<(String, Scope)> = Vec::new();
        loop {
            let event = self.reader.read_event().map_err(|e| self.xml_error(e))?;
            let (start, has_children) = match event {
                Event::Start(e) => (e, true),
                Event::Empty(e) => (e, false),
                Event::End(_) => {
                    stack.pop();
                    continue;
                }
                Event::Eof => {
                    if let Some((open, _)) = stack.last() {
                        let msg = format!("<{open}> is not closed before the end of the file");
                        return Err(self.xml_error_at(&msg));
                    }
                    break;
                }
                _ => continue, // text, comments, declarations: nothing to configure
            };
            let name = start.name().as_ref().to_string();
            let inner = match stack.last() {
                None if seen_root => {
                    return Err(self.xml_error_at("more than one root element"));
                }
                None if name != "seelog" => return Err(ParseError::WrongRoot { found: name }),
                None => {
                    seen_root = true;
                    if let Some(v) = self
                        .attributes(&start, &["minlevel"], &IGNORED_ROOT_ATTRIBUTES)?
                        .remove("minlevel")
                    {
                        min_level =
                            Level::parse(&v).ok_or(ParseError::UnknownLevel { value: v })?;
                    }
                    Scope::Root
                }
                Some((parent, Scope::Root)) => match name.as_str() {
                    "outputs" if seen_outputs => return Err(ParseError::DuplicateOutputs),
                    "outputs" => {
                        seen_outputs = true;
                        self.attributes(&start, &[], &["formatid"])?;
                        Scope::Outputs
                    }
                    "formats" | "exceptions" => Scope::Skip,
                    _ => return Err(unsupported(name, parent)),
                },
                Some((parent, Scope::Outputs)) => match name.as_str() {
                    "file" => {
                        let path = self.path_attribute(&start, &name, "path", &["formatid"])?;
                        outputs.push(Output::File(path));
                        Scope::Skip
                    }
                    "rollingfile" => {
                        let path =
                            self.path_attribute(&start, &name, "filename", &ROLLING_ATTRIBUTES)?;
                        outputs.push(Output::File(path));
                        Scope::Skip
                    }
                    "console" => {
                        self.attributes(&start, &[], &["formatid"])?;
                        outputs.push(Output::Console);
                        Scope::Skip
                    }
                    "buffered" | "splitter" => Scope::Outputs,
                    _ => return Err(unsupported(name, parent)),
                },
                Some((_, Scope::Skip)) => Scope::Skip,
            };
            if has_children {
                stack.push((name, inner));
            }
        }
        if !seen_root {
            return Err(ParseError::NoRoot);
        }
        if outputs.is_empty() {
            return Err(ParseError::NoOutputs);
        }
        Ok(LogConfig { min_level, outputs })
    }

    /// The element's attributes as a map, restricted to `wanted`; names in `ignored` are
    /// dropped, any other name is an error (a typo such as `minlvl` must not pass silently).
    fn attributes(
        &self,
        start: &BytesStart<'_>,
        wanted: &[&str],
        ignored: &[&str],
    ) -> Result<HashMap<String, String>, ParseError> {
        let element = start.name().as_ref().to_string();
        let mut out = HashMap::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| self.xml_error(e.into()))?;
            let key = attr.key.as_ref().to_string();
            if ignored.contains(&key.as_str()) {
                continue;
            }
            if !wanted.contains(&key.as_str()) {
                return Err(ParseError::UnsupportedAttribute {
                    element,
                    attribute: key,
                });
            }
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|e| self.xml_error(e))?;
            out.insert(key, value.into_owned());
        }
        Ok(out)
    }

    fn path_attribute(
        &self,
        start: &BytesStart<'_>,
        element: &str,
        attribute: &'static str,
        ignored: &[&str],
    ) -> Result<PathBuf, ParseError> {
        let mut attrs = self.attributes(start, &[attribute], ignored)?;
        match attrs.remove(attribute) {
            Some(v) if !v.trim().is_empty() => Ok(PathBuf::from(v)),
            _ => Err(ParseError::MissingAttribute {
                element: element.to_string(),
                attribute,
            }),
        }
    }

    fn xml_error(&self, e: quick_xml::Error) -> ParseError {
        let (line, column) = line_column(self.text, self.reader.error_position());
        ParseError::Xml {
            line,
            column,
            message: e.to_string(),
        }
    }

    fn xml_error_at(&self, message: &str) -> ParseError {
        let (line, column) = line_column(self.text, self.reader.buffer_position());
        ParseError::Xml {
            line,
            column,
            message: message.to_string(),
        }
    }
}

fn unsupported(element: String, parent: &str) -> ParseError {
    ParseError::UnsupportedElement {
        element,
        parent: parent.to_string(),
    }
}

/// 1-based line and column (in characters) of byte offset `pos` in `text`.
fn line_column(text: &str, pos: u64) -> (usize, usize) {
    let pos = usize::try_from(pos).unwrap_or(usize::MAX).min(text.len());
    let mut end = pos;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(p: &str) -> Output {
        Output::File(PathBuf::from(p))
    }

    #[test]
    fn accepted_configs() {
        let cases: Vec<(&str, LogConfig)> = vec![
            (
                r#"<seelog minlevel="info"><outputs><file path="log/a.log"/></outputs></seelog>"#,
                LogConfig {
                    min_level: Level::Info,
                    outputs: vec![file("log/a.log")],
                },
            ),
            (
                "<?xml version=\"1.0\"?>\n<!-- c -->\n<seelog minlevel=\"debug\">\n  <outputs>\n    <console/>\n    <file path=\"x.log\"></file>\n  </outputs>\n</seelog>\n",
                LogConfig {
                    min_level: Level::Debug,
                    outputs: vec![Output::Console, file("x.log")],
                },
            ),
            (
                r#"<seelog type="asynctimer" asyncinterval="1000"><outputs formatid="main"><rollingfile type="size" filename="r.log" maxsize="100" maxrolls="5"/></outputs><formats><format id="main" format="%Msg%n"/></formats></seelog>"#,
                LogConfig {
                    min_level: Level::Trace,
                    outputs: vec![file("r.log")],
                },
            ),
            (
                r#"<seelog minlevel="CRITICAL"><outputs><buffered size="10000"><file path="b.log"/></buffered><splitter><console/></splitter></outputs></seelog>"#,
                LogConfig {
                    min_level: Level::Critical,
                    outputs: vec![file("b.log"), Output::Console],
                },
            ),
            (
                r#"<seelog minlevel="off"><outputs><file path="a &amp; b.log"/></outputs></seelog>"#,
                LogConfig {
                    min_level: Level::Off,
                    outputs: vec![file("a & b.log")],
                },
            ),
        ];
        for (text, want) in cases {
            assert_eq!(LogConfig::parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn every_level_name_parses() {
        for name in Level::NAMES {
            let text =
                format!(r#"<seelog minlevel="{name}"><outputs><console/></outputs></seelog>"#);
            assert!(LogConfig::parse(&text).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejected_configs() {
        let cases: Vec<(&str, ParseError)> = vec![
            ("", ParseError::NoRoot),
            ("<!-- nothing -->", ParseError::NoRoot),
            (
                "<log/>",
                ParseError::WrongRoot {
                    found: "log".into(),
                },
            ),
            (
                r#"<seelog minlevel="loud"><outputs><console/></outputs></seelog>"#,
                ParseError::UnknownLevel {
                    value: "loud".into(),
                },
            ),
            (r#"<seelog minlevel="info"/>"#, ParseError::NoOutputs),
            (
                r#"<seelog><outputs></outputs></seelog>"#,
                ParseError::NoOutputs,
            ),
            (
                r#"<seelog><outputs><file/></outputs></seelog>"#,
                ParseError::MissingAttribute {
                    element: "file".into(),
                    attribute: "path",
                },
            ),
            (
                r#"<seelog><outputs><file path=" "/></outputs></seelog>"#,
                ParseError::MissingAttribute {
                    element: "file".into(),
                    attribute: "path",
                },
            ),
            (
                r#"<seelog><outputs><rollingfile path="x"/></outputs></seelog>"#,
                ParseError::UnsupportedAttribute {
                    element: "rollingfile".into(),
                    attribute: "path".into(),
                },
            ),
            (
                r#"<seelog minlvl="info"><outputs><console/></outputs></seelog>"#,
                ParseError::UnsupportedAttribute {
                    element: "seelog".into(),
                    attribute: "minlvl".into(),
                },
            ),
            (
                r#"<seelog><outputs><smtp/></outputs></seelog>"#,
                ParseError::UnsupportedElement {
                    element: "smtp".into(),
                    parent: "outputs".into(),
                },
            ),
            (
                r#"<seelog><output><console/></output></seelog>"#,
                ParseError::UnsupportedElement {
                    element: "output".into(),
                    parent: "seelog".into(),
                },
            ),
            (
                r#"<seelog><outputs><console/></outputs><outputs><console/></outputs></seelog>"#,
                ParseError::DuplicateOutputs,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(LogConfig::parse(text), Err(want), "{text}");
        }
    }

    #[test]
    fn broken_xml_reports_line_and_column() {
        let text = "<seelog minlevel=\"info\">\n  <outputs>\n    <file path=\"a.log\">\n  </outputs>\n</seelog>\n";
        match LogConfig::parse(text) {
            Err(ParseError::Xml {
                line,
                column,
                message,
            }) => {
                assert_eq!((line, column), (4, 3), "{message}");
                let shown = ParseError::Xml {
                    line,
                    column,
                    message,
                }
                .to_string();
                assert!(
                    shown.starts_with("invalid XML at line 4, column 3: "),
                    "{shown}"
                );
            }
            other => panic!("expected an XML error, got {other:?}"),
        }
        let unclosed = "<seelog minlevel=\"info\">\n<outputs><console/>";
        assert!(matches!(
            LogConfig::parse(unclosed),
            Err(ParseError::Xml { .. })
        ));
        let second_root = "<seelog><outputs><console/></outputs></seelog>\n<seelog/>";
        assert!(matches!(
            LogConfig::parse(second_root),
            Err(ParseError::Xml { line: 2, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = LogConfig::parse(&text);
        }

        #[test]
        fn any_file_path_round_trips(path in "[a-zA-Z0-9_./-]{1,40}", console in proptest::bool::ANY) {
            let outputs = if console { "<console/>" } else { "" };
            let text = format!(r#"<seelog minlevel="warn"><outputs><file path="{path}"/>{outputs}</outputs></seelog>"#);
            let mut want = vec![Output::File(PathBuf::from(&path))];
            if console {
                want.push(Output::Console);
            }
            proptest::prop_assert_eq!(LogConfig::parse(&text), Ok(LogConfig { min_level: Level::Warn, outputs: want }));
        }
    }

    #[test]
    fn line_column_counts_characters() {
        assert_eq!(line_column("abc", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 3), (2, 1));
        assert_eq!(line_column("é", 1), (1, 1)); // inside a character: clamped back
        assert_eq!(line_column("ab", 99), (1, 3));
    }
}
