//! From the raw Teams `text` to tokens: mention stripping, entity decoding, quoting and options.

use std::fmt;

use super::ParseError;

/// A `mention` entity of the inbound activity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention {
    /// `mentioned.id`: `28:<appId>` for the bot, `29:…` for people.
    pub id: String,
    pub name: String,
    /// The markup as it appears in the message text, e.g. `<at>Dana Lee</at>`.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Word(String),
    Quoted(String),
    Opt { key: String, value: String },
    Mention(Mention),
}

impl fmt::Display for Token {
    /// Roughly how the user typed it, for error messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Word(w) => f.write_str(w),
            Token::Quoted(q) => write!(f, "\"{q}\""),
            Token::Opt { key, value } if value.contains(char::is_whitespace) => {
                write!(f, "{key}:\"{value}\"")
            }
            Token::Opt { key, value } => write!(f, "{key}:{value}"),
            Token::Mention(m) => write!(f, "@{}", m.name),
        }
    }
}

/// Removes every mention of the bot, decodes HTML entities, turns every kind of whitespace into a
/// plain space and trims.
///
/// The bot is found by entity id, not by name, because a team can rename the bot. Mentions of other
/// people stay as `<at>…</at>` so [`tokenize`] can turn them into [`Token::Mention`].
pub fn strip_bot_mentions(text: &str, mentions: &[Mention], bot_id: &str) -> String {
    let bot_mentions: Vec<&Mention> = mentions
        .iter()
        .filter(|m| is_same_bot(&m.id, bot_id) && !m.text.trim().is_empty())
        .collect();

    let mut removed = false;
    let mut s = text.to_owned();
    // Entity text and message text are normally encoded the same way; try the raw form first and
    // the decoded one after decoding, so a name like "R&amp;D bot" is found either way.
    for m in &bot_mentions {
        removed |= remove_all(&mut s, &m.text);
    }
    let mut s = decode_entities(&s);
    for m in &bot_mentions {
        removed |= remove_all(&mut s, &decode_entities(&m.text));
    }
    let s = normalise_whitespace(&s);
    let s = s.trim();

    if !removed {
        // Clients without entities, or an entity that no longer matches the text after a rename:
        // the bot's own mention is then the leading tag, unless that tag is someone else.
        if let Some((tag, rest)) = split_leading_at_tag(s) {
            let is_person = mentions
                .iter()
                .filter(|m| !is_same_bot(&m.id, bot_id))
                .any(|m| m.text == tag || decode_entities(&m.text) == tag);
            if !is_person {
                return rest.trim().to_owned();
            }
        }
    }
    s.to_owned()
}

/// Splits stripped text into tokens. See [`Token`] for the kinds.
pub fn tokenize(text: &str, mentions: &[Mention]) -> Result<Vec<Token>, ParseError> {
    let mut cursor = Cursor { src: text, pos: 0 };
    let mut tokens = Vec::new();
    loop {
        cursor.skip_whitespace();
        let Some(c) = cursor.peek() else {
            break;
        };
        if let Some((mention, len)) = mention_at(cursor.rest(), mentions) {
            cursor.advance(len);
            tokens.push(Token::Mention(mention.clone()));
        } else if is_quote(c) {
            cursor.advance(c.len_utf8());
            tokens.push(Token::Quoted(cursor.quoted()?));
        } else if let Some(opt) = cursor.option()? {
            tokens.push(opt);
        } else {
            tokens.push(Token::Word(cursor.word().to_owned()));
        }
    }
    Ok(tokens)
}

/// `28:<appId>` and the bare app id name the same bot; callers hold either form.
fn is_same_bot(mention_id: &str, bot_id: &str) -> bool {
    let strip = |id: &str| {
        let id = id.trim();
        id.strip_prefix("28:").unwrap_or(id).to_ascii_lowercase()
    };
    !bot_id.trim().is_empty() && strip(mention_id) == strip(bot_id)
}

/// Replaces each occurrence with a space, so words on either side never run together.
fn remove_all(s: &mut String, needle: &str) -> bool {
    if needle.is_empty() || !s.contains(needle) {
        return false;
    }
    *s = s.replace(needle, " ");
    true
}

/// `<at>Name</at>` (or `<at id="0">Name</at>`) at the very start, and what follows it.
fn split_leading_at_tag(s: &str) -> Option<(&str, &str)> {
    let after_open = s.strip_prefix("<at")?;
    if !after_open.starts_with(['>', ' ']) {
        return None;
    }
    let close = s.find("</at>")?;
    let end = close + "</at>".len();
    Some((s.get(..end)?, s.get(end..)?))
}

fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        let from_amp = rest.get(amp..).unwrap_or_default();
        match entity_at(from_amp) {
            Some((decoded, len)) => {
                out.push(decoded);
                rest = from_amp.get(len..).unwrap_or_default();
            }
            None => {
                out.push('&');
                rest = from_amp.get(1..).unwrap_or_default();
            }
        }
    }
    out.push_str(rest);
    out
}

/// The entity at the start of `s` (which begins with `&`) and its length in bytes.
fn entity_at(s: &str) -> Option<(char, usize)> {
    // The longest entity we decode is `&#x10FFFF;`; a bounded look-ahead keeps a stray `&` cheap.
    let (semi, _) = s.char_indices().take(12).find(|&(_, c)| c == ';')?;
    let name = s.get(1..semi)?;
    let decoded = match name {
        "nbsp" => '\u{a0}',
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse::<u32>().ok()?,
            };
            char::from_u32(code).filter(|&c| c != '\0')?
        }
    };
    Some((decoded, semi + 1))
}

/// Newlines, tabs and NBSP (Teams pads mentions with them) become spaces; zero-width characters
/// that Outlook and Teams paste in are dropped so they cannot hide inside a command name.
fn normalise_whitespace(s: &str) -> String {
    s.replace("\r\n", " ")
        .chars()
        .filter(|c| {
            !matches!(
                c,
                '\u{200b}' | '\u{200c}' | '\u{200d}' | '\u{2060}' | '\u{feff}'
            )
        })
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect()
}

/// Straight quotes, and the curly and low quotes that Teams, Outlook and phone keyboards substitute.
fn is_quote(c: char) -> bool {
    matches!(c, '"' | '\u{201c}' | '\u{201d}' | '\u{201e}')
}

fn is_key_start(c: char) -> bool {
    c.is_ascii_alphabetic()
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The longest mention of a person whose markup starts `rest`.
fn mention_at<'m>(rest: &str, mentions: &'m [Mention]) -> Option<(&'m Mention, usize)> {
    if !rest.starts_with("<at") {
        return None;
    }
    mentions
        .iter()
        .flat_map(|m| [m.text.clone(), decode_entities(&m.text)].map(|text| (m, text)))
        .filter(|(_, text)| !text.is_empty() && rest.starts_with(text.as_str()))
        .map(|(m, text)| (m, text.len()))
        .max_by_key(|&(_, len)| len)
}

struct Cursor<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        self.src.get(self.pos..).unwrap_or_default()
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn advance(&mut self, bytes: usize) {
        self.pos = (self.pos + bytes).min(self.src.len());
    }

    fn skip_whitespace(&mut self) {
        let rest = self.rest();
        self.advance(rest.len() - rest.trim_start().len());
    }

    /// Up to the next whitespace.
    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        self.advance(len);
        rest.get(..len).unwrap_or_default()
    }

    /// The body of a quoted string; the opening quote is already consumed.
    fn quoted(&mut self) -> Result<String, ParseError> {
        let rest = self.rest();
        let (close, quote) = rest
            .char_indices()
            .find(|&(_, c)| is_quote(c))
            .ok_or(ParseError::UnterminatedQuote)?;
        self.advance(close + quote.len_utf8());
        Ok(rest.get(..close).unwrap_or_default().to_owned())
    }

    /// `key:value` or `key:"several words"`; `None` (cursor untouched) when the word is not an
    /// option. Keys start with a letter so that times (`09:30`) stay words, and a value starting
    /// with `/` means a URL (`https://…`), which is a word too.
    fn option(&mut self) -> Result<Option<Token>, ParseError> {
        let rest = self.rest();
        if !rest.starts_with(is_key_start) {
            return Ok(None);
        }
        let key_len = rest.find(|c| !is_key_char(c)).unwrap_or(rest.len());
        let Some(after_key) = rest.get(key_len..) else {
            return Ok(None);
        };
        let Some(after_colon) = after_key.strip_prefix(':') else {
            return Ok(None);
        };
        if after_colon.starts_with('/') {
            return Ok(None);
        }
        let key = rest.get(..key_len).unwrap_or_default().to_ascii_lowercase();
        self.advance(key_len + 1);

        let value = match self.peek() {
            Some(q) if is_quote(q) => {
                self.advance(q.len_utf8());
                self.quoted()?
            }
            Some(c) if !c.is_whitespace() => self.word().to_owned(),
            _ => String::new(),
        };
        if value.trim().is_empty() {
            return Err(ParseError::EmptyOptionValue { key });
        }
        Ok(Some(Token::Opt { key, value }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    const BOT: &str = "28:11111111-2222-3333-4444-555555555555";

    fn mention(id: &str, name: &str) -> Mention {
        Mention {
            id: id.to_owned(),
            name: name.to_owned(),
            text: format!("<at>{name}</at>"),
        }
    }

    fn bot(name: &str) -> Mention {
        mention(BOT, name)
    }

    fn dana() -> Mention {
        mention("29:1qXk-dana", "Dana Lee")
    }

    fn w(s: &str) -> Token {
        Token::Word(s.to_owned())
    }

    fn q(s: &str) -> Token {
        Token::Quoted(s.to_owned())
    }

    fn opt(key: &str, value: &str) -> Token {
        Token::Opt {
            key: key.to_owned(),
            value: value.to_owned(),
        }
    }

    #[test]
    fn strip_bot_mentions_table() {
        let cases: Vec<(&str, &str, Vec<Mention>, &str)> = vec![
            (
                "crlf around the mention",
                "\r\n<at>Fieldbot</at> roles tam\r\n",
                vec![bot("Fieldbot")],
                "roles tam",
            ),
            (
                "nbsp entity after the mention",
                "<at>Fieldbot</at>&nbsp;help",
                vec![bot("Fieldbot")],
                "help",
            ),
            (
                "literal nbsp and tabs",
                "<at>Fieldbot</at>\u{a0}roles\tatu ",
                vec![bot("Fieldbot")],
                "roles atu",
            ),
            (
                "renamed bot is found by id",
                "<at>FT Helper</at> help",
                vec![bot("FT Helper")],
                "help",
            ),
            (
                "bot mentioned twice",
                "<at>Fieldbot</at> roles <at>Fieldbot</at> tam",
                vec![bot("Fieldbot"), bot("Fieldbot")],
                "roles   tam",
            ),
            (
                "person mention is kept",
                "<at>Fieldbot</at> team add TAM <at>Dana Lee</at>",
                vec![bot("Fieldbot"), dana()],
                "team add TAM <at>Dana Lee</at>",
            ),
            (
                "no entities but a leading tag",
                "<at>Fieldbot</at> help",
                vec![],
                "help",
            ),
            (
                "no entities, tag with attributes",
                "<at id=\"0\">Fieldbot</at> help",
                vec![],
                "help",
            ),
            (
                "entity name differs from the text after a rename",
                "<at>New Name</at> help",
                vec![bot("Old Name")],
                "help",
            ),
            (
                "leading person mention without a bot entity is kept",
                "<at>Dana Lee</at> help",
                vec![dana()],
                "<at>Dana Lee</at> help",
            ),
            (
                "entities decoded once only",
                "<at>Fieldbot</at> say &amp;lt;b&amp;gt; &quot;hi&quot; &#39;x&#39; &#x41;",
                vec![bot("Fieldbot")],
                "say &lt;b&gt; \"hi\" 'x' A",
            ),
            (
                "encoded bot name",
                "<at>R&amp;D bot</at> help",
                vec![Mention {
                    id: BOT.to_owned(),
                    name: "R&D bot".to_owned(),
                    text: "<at>R&D bot</at>".to_owned(),
                }],
                "help",
            ),
            (
                "bot id given without the 28: prefix still matches",
                "<at>Fieldbot</at> help",
                vec![mention("11111111-2222-3333-4444-555555555555", "Fieldbot")],
                "help",
            ),
            ("personal chat, no mention", "  help  ", vec![], "help"),
            ("stray ampersand", "a & b &c", vec![], "a & b &c"),
            ("zero-width space", "he\u{200b}lp", vec![], "help"),
        ];
        for (name, text, mentions, expected) in cases {
            assert_eq!(strip_bot_mentions(text, &mentions, BOT), expected, "{name}");
        }
    }

    #[test]
    fn tokenize_table() {
        let cases: Vec<(&str, &str, Vec<Token>)> = vec![
            ("empty", "", vec![]),
            ("words", "roles  tam", vec![w("roles"), w("tam")]),
            (
                "straight quotes",
                "engagement start \"Contoso Ltd\"",
                vec![w("engagement"), w("start"), q("Contoso Ltd")],
            ),
            (
                "curly quotes",
                "engagement start \u{201c}Contoso Ltd\u{201d} motion:rfa",
                vec![
                    w("engagement"),
                    w("start"),
                    q("Contoso Ltd"),
                    opt("motion", "rfa"),
                ],
            ),
            (
                "two closing curly quotes",
                "x \u{201d}A B\u{201d}",
                vec![w("x"), q("A B")],
            ),
            ("empty quotes", "x \"\"", vec![w("x"), q("")]),
            (
                "option keys are lowercased, values kept",
                "TPID:123 Tenant:Contoso.onmicrosoft.com",
                vec![opt("tpid", "123"), opt("tenant", "Contoso.onmicrosoft.com")],
            ),
            (
                "quoted option value",
                "fta decline 7 reason:\"no capacity this quarter\"",
                vec![
                    w("fta"),
                    w("decline"),
                    w("7"),
                    opt("reason", "no capacity this quarter"),
                ],
            ),
            (
                "curly quoted option value",
                "event:\u{201c}Go live in May\u{201d}",
                vec![opt("event", "Go live in May")],
            ),
            (
                "times and urls are words",
                "sync schedule weekly mon 09:30 https://teams.microsoft.com/l/x",
                vec![
                    w("sync"),
                    w("schedule"),
                    w("weekly"),
                    w("mon"),
                    w("09:30"),
                    w("https://teams.microsoft.com/l/x"),
                ],
            ),
            (
                "person mention",
                "team add TAM <at>Dana Lee</at>",
                vec![w("team"), w("add"), w("TAM"), Token::Mention(dana())],
            ),
            (
                "unknown at-markup is just words",
                "team add TAM <at>Eve</at>",
                vec![w("team"), w("add"), w("TAM"), w("<at>Eve</at>")],
            ),
            (
                "keys with dashes and underscores",
                "non-ecif_x:1",
                vec![opt("non-ecif_x", "1")],
            ),
            ("colon without key", ":x", vec![w(":x")]),
        ];
        for (name, text, expected) in cases {
            assert_eq!(tokenize(text, &[dana()]).unwrap(), expected, "{name}");
        }
    }

    #[test]
    fn tokenize_errors() {
        let cases = [
            ("engagement start \"Contoso", ParseError::UnterminatedQuote),
            ("x \u{201c}Contoso", ParseError::UnterminatedQuote),
            ("notes:\"unfinished", ParseError::UnterminatedQuote),
            (
                "tpid: 123",
                ParseError::EmptyOptionValue {
                    key: "tpid".to_owned(),
                },
            ),
            (
                "x Notes:",
                ParseError::EmptyOptionValue {
                    key: "notes".to_owned(),
                },
            ),
            (
                "notes:\"  \"",
                ParseError::EmptyOptionValue {
                    key: "notes".to_owned(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(tokenize(text, &[]), Err(expected), "{text}");
        }
    }

    #[test]
    fn strip_then_tokenize_keeps_the_person_and_drops_the_bot() {
        let mentions = [bot("Fieldbot"), dana()];
        let text = "\r\n<at>Fieldbot</at>&nbsp;team add TAM <at>Dana Lee</at>\r\n";
        let stripped = strip_bot_mentions(text, &mentions, BOT);
        assert_eq!(
            tokenize(&stripped, &mentions).unwrap(),
            vec![w("team"), w("add"), w("TAM"), Token::Mention(dana())]
        );
    }

    #[test]
    fn token_display_is_what_the_user_typed() {
        assert_eq!(w("x").to_string(), "x");
        assert_eq!(q("a b").to_string(), "\"a b\"");
        assert_eq!(opt("k", "v").to_string(), "k:v");
        assert_eq!(opt("k", "v w").to_string(), "k:\"v w\"");
        assert_eq!(Token::Mention(dana()).to_string(), "@Dana Lee");
    }
}
