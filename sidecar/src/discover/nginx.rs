//! The names nginx serves over TLS, from `nginx -T` (the whole
//! configuration, includes expanded): the `server_name`s of every `server`
//! block with a `listen ... ssl` (or `quic`) directive. A small tokenizer
//! for nginx's syntax: words, quoted strings, `;`, `{`, `}`, `#` comments.

/// One token of nginx's configuration syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

fn tokens(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            ';' => out.push(Token::Semicolon),
            '{' => out.push(Token::Open),
            '}' => out.push(Token::Close),
            '"' | '\'' => {
                let quote = c;
                let mut word = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => word.extend(chars.next()),
                        c if c == quote => break,
                        c => word.push(c),
                    }
                }
                out.push(Token::Word(word));
            }
            c => {
                let mut word = String::from(c);
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || matches!(c, ';' | '{' | '}') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                out.push(Token::Word(word));
            }
        }
    }
    out
}

/// What one `server` block says about TLS and names.
#[derive(Debug, Default)]
struct Server {
    tls: bool,
    names: Vec<String>,
}

/// The `server_name`s of each TLS `server` block, in file order. Regex
/// names (`~...`), the catch-all `_` and `""` are passed through as they
/// are: deciding what can be issued is [`super::requests`]'s job.
pub fn tls_server_names(nginx_t: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    // The stack of open blocks: Some(server) for a `server` block.
    let mut stack: Vec<Option<Server>> = Vec::new();
    let mut directive: Vec<String> = Vec::new();
    for token in tokens(nginx_t) {
        match token {
            Token::Word(word) => directive.push(word),
            Token::Open => {
                // `server {` inside `http` (not `upstream`'s `server host;`).
                let is_server = directive.len() == 1 && directive[0] == "server";
                stack.push(is_server.then(Server::default));
                directive.clear();
            }
            Token::Semicolon => {
                if let Some(Some(server)) = stack.last_mut() {
                    match directive.first().map(String::as_str) {
                        Some("listen") => {
                            server.tls |= directive[1..].iter().any(|p| p == "ssl" || p == "quic");
                        }
                        Some("server_name") => server.names.extend(directive[1..].iter().cloned()),
                        _ => {}
                    }
                }
                directive.clear();
            }
            Token::Close => {
                if let Some(Some(server)) = stack.pop() {
                    if server.tls && !server.names.is_empty() {
                        found.push(server.names);
                    }
                }
                directive.clear();
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tls_server_blocks_count_and_comments_and_quotes_are_understood() {
        let text = r#"
# configuration file /etc/nginx/nginx.conf:
events { worker_connections 64; }
http {
    upstream app { server 127.0.0.1:8081; }
    server {                      # plain HTTP: not ours to secure
        listen 80;
        server_name plain.test;
    }
    server {
        listen 443 ssl;
        listen [::]:443 ssl http2;
        server_name a.test "www.a.test"; # two names
        ssl_certificate /certs/$ssl_server_name/live/fullchain.pem;
        location / { proxy_pass http://app; }
    }
    server {
        listen 8443 quic reuseport;
        server_name ~^(?<sub>.+)\.b\.test$ _ .c.test *.d.test;
    }
}
"#;
        assert_eq!(
            tls_server_names(text),
            vec![
                vec!["a.test".to_owned(), "www.a.test".to_owned()],
                vec![
                    "~^(?<sub>.+)\\.b\\.test$".to_owned(),
                    "_".to_owned(),
                    ".c.test".to_owned(),
                    "*.d.test".to_owned()
                ],
            ]
        );
    }

    #[test]
    fn an_unterminated_file_yields_what_was_complete() {
        assert_eq!(
            tls_server_names("http { server { listen 443 ssl; server_name a.test; } server { listen 443 ssl;"),
            vec![vec!["a.test".to_owned()]]
        );
    }
}
