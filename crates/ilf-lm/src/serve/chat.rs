//! Chat prompts in ChatML (`<|im_start|>role\ncontent<|im_end|>\n` … `<|im_start|>assistant\n`),
//! the format of Qwen2.5's chat template.
//!
//! ilf-lm carries no Jinja engine, so the GGUF's template is not executed: a model whose template
//! is not ChatML is refused for chat (completions still work). The one thing read from the
//! template is its default system message (Qwen2.5 inserts "You are Qwen, created by Alibaba
//! Cloud. You are a helpful assistant." when the conversation has none), so prompts match what
//! the model was trained on.

use super::protocol::{ApiError, ChatContent, ChatMessage};

/// How this model's conversations become prompts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTemplate {
    /// Inserted as the system message when the conversation has none.
    pub default_system: Option<String>,
}

impl ChatTemplate {
    /// From the model's Jinja template: `None` when it has one that is not ChatML. A model without
    /// a template gets plain ChatML (the tiny test models, base models used as chat models).
    pub fn from_jinja(template: Option<&str>) -> Option<Self> {
        let Some(t) = template else {
            return Some(Self {
                default_system: None,
            });
        };
        if !t.contains("<|im_start|>") {
            return None;
        }
        Some(Self {
            default_system: default_system(t),
        })
    }

    /// The prompt for `messages`, ending with the assistant's header.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, ApiError> {
        if messages.is_empty() {
            return Err(ApiError::bad_param(
                "messages",
                "messages is empty: send at least one message",
            ));
        }
        let mut out = String::new();
        if messages[0].role != "system" {
            if let Some(system) = &self.default_system {
                push(&mut out, "system", system);
            }
        }
        for (i, m) in messages.iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(ApiError::bad_param(
                    "messages",
                    format!(
                        "messages[{i}].role is {:?}; this server supports system, user and assistant",
                        m.role
                    ),
                ));
            }
            let text = match &m.content {
                ChatContent::Text(s) => s.clone(),
                ChatContent::Parts(parts) => {
                    let mut s = String::new();
                    for p in parts {
                        match (p.kind.as_str(), &p.text) {
                            ("text", Some(t)) => s.push_str(t),
                            _ => {
                                return Err(ApiError::bad_param(
                                    "messages",
                                    format!(
                                        "messages[{i}] has a {:?} content part; only text parts are supported",
                                        p.kind
                                    ),
                                ))
                            }
                        }
                    }
                    s
                }
            };
            push(&mut out, &m.role, &text);
        }
        out.push_str("<|im_start|>assistant\n");
        Ok(out)
    }
}

fn push(out: &mut String, role: &str, content: &str) {
    out.push_str("<|im_start|>");
    out.push_str(role);
    out.push('\n');
    out.push_str(content);
    out.push_str("<|im_end|>\n");
}

/// The literal system message a ChatML Jinja template inserts by default: the text after a
/// literal `<|im_start|>system\n` up to `<|im_end|>`, when it contains no template syntax.
fn default_system(template: &str) -> Option<String> {
    const HEAD: &str = "<|im_start|>system\\n";
    template.match_indices(HEAD).find_map(|(i, _)| {
        let rest = &template[i + HEAD.len()..];
        let end = rest.find("<|im_end|>")?;
        let body = &rest[..end];
        let literal = !body.is_empty() && !body.contains(['\'', '"', '{', '}', '+']);
        literal.then(|| body.replace("\\n", "\n"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The system-message part of Qwen2.5-Coder-Instruct's `tokenizer.chat_template`.
    const QWEN25: &str = r#"{%- if tools %}{{- '<|im_start|>system\n' }}{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] }}{%- else %}{{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}{%- endif %}{%- else %}{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %}{%- endif %}"#;

    fn msg(role: &str, content: &str) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: ChatContent::Text(content.into()),
        }
    }

    #[test]
    fn qwen_template_gets_its_default_system_message() {
        let t = ChatTemplate::from_jinja(Some(QWEN25)).unwrap();
        assert_eq!(
            t.default_system.as_deref(),
            Some("You are Qwen, created by Alibaba Cloud. You are a helpful assistant.")
        );
        assert_eq!(
            t.render(&[msg("user", "hi")]).unwrap(),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(
            t.render(&[msg("system", "be brief"), msg("user", "hi")]).unwrap(),
            "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn non_chatml_templates_and_bad_roles_are_refused() {
        assert!(ChatTemplate::from_jinja(Some("[INST] {{ m }} [/INST]")).is_none());
        let t = ChatTemplate::from_jinja(None).unwrap();
        assert!(t.render(&[]).is_err());
        let e = t.render(&[msg("tool", "x")]).unwrap_err();
        assert_eq!(e.param, Some("messages"));
    }
}
