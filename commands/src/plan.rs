//! The plan of a change (`--dry-run`, and the plan on an approval card): what the target
//! says would change, and what the policy says about it.

use serde::{Deserialize, Serialize};

/// One field that would change. `None` on a side means absent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChange {
    /// `image (container erlmcp)`, `replicas`, `selector version`, `annotation KEY`.
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl PlanChange {
    pub fn new(field: impl Into<String>, from: Option<String>, to: Option<String>) -> Self {
        PlanChange {
            field: field.into(),
            from,
            to,
        }
    }

    pub fn line(&self) -> String {
        let side = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".into());
        format!("{}: {} → {}", self.field, side(&self.from), side(&self.to))
    }
}

/// What would change on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectPlan {
    /// `deployment/erlmcp in erlmcp-prod`.
    pub object: String,
    pub changes: Vec<PlanChange>,
}

/// A target's plan for a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetPlan {
    /// Where the plan comes from: "kubernetes, server-side dry run (dryRun=All)",
    /// "sandbox (simulated)".
    pub source: String,
    pub objects: Vec<ObjectPlan>,
    /// Steps and facts beyond field changes ("waits for erlmcp-green to be available").
    pub notes: Vec<String>,
}

impl TargetPlan {
    /// The plan as lines, for an approval card and for the dry-run reply.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("Plan from {}:", self.source)];
        for o in &self.objects {
            if o.changes.is_empty() {
                out.push(format!("{}: no change", o.object));
                continue;
            }
            out.push(format!("{}:", o.object));
            out.extend(o.changes.iter().map(|c| format!("  • {}", c.line())));
        }
        out.extend(self.notes.iter().map(|n| format!("  • {n}")));
        out
    }
}

/// What the policy would decide about the change, as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanDecision {
    /// It would run at once under this rule.
    RunsAtOnce {
        rule: Option<usize>,
        break_glass: bool,
    },
    NeedsApproval {
        rule: usize,
        count: u32,
        from: Vec<String>,
    },
    /// It would be refused, with the refusal's text.
    Refused(String),
}

impl PlanDecision {
    pub fn line(&self) -> String {
        match self {
            PlanDecision::RunsAtOnce {
                rule: Some(r),
                break_glass: true,
            } => format!("Policy: rules[{r}] applies; it would run at once (break-glass)"),
            PlanDecision::RunsAtOnce { rule: Some(r), .. } => {
                format!("Policy: rules[{r}] applies; it would run at once, no approval needed")
            }
            PlanDecision::RunsAtOnce { rule: None, .. } => {
                "Policy: it would run at once".to_string()
            }
            PlanDecision::NeedsApproval { rule, count, from } => format!(
                "Policy: rules[{rule}] applies; needs {count} approval{} from {} (never the requester)",
                if *count == 1 { "" } else { "s" },
                from.join(" or ")
            ),
            PlanDecision::Refused(why) => format!("Policy: it would be refused: {why}"),
        }
    }
}

/// The dry-run reply: the plan, or why the target could not make one, then the policy.
pub fn render(
    what: &str,
    target: Result<&TargetPlan, &str>,
    decision: &PlanDecision,
    met: &[String],
) -> String {
    let mut out = vec![format!("Dry run of `{what}`: nothing was changed.")];
    match target {
        Ok(plan) => out.extend(plan.lines()),
        Err(e) => out.push(format!("No plan from the target: {e}")),
    }
    out.push(decision.line());
    out.extend(met.iter().map(|m| format!("✓ {m}")));
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_reads_as_from_and_to() {
        let plan = TargetPlan {
            source: "sandbox (simulated)".into(),
            objects: vec![ObjectPlan {
                object: "deployment/erlmcp".into(),
                changes: vec![PlanChange::new(
                    "image",
                    Some("erlmcp:v1".into()),
                    Some("erlmcp:v2".into()),
                )],
            }],
            notes: vec!["then the post-deploy guard watches it".into()],
        };
        let text = render(
            "deploy prod v2",
            Ok(&plan),
            &PlanDecision::NeedsApproval {
                rule: 2,
                count: 1,
                from: vec!["change-board".into()],
            },
            &["CI green for v2".into()],
        );
        assert_eq!(
            text,
            "Dry run of `deploy prod v2`: nothing was changed.\n\
             Plan from sandbox (simulated):\n\
             deployment/erlmcp:\n  \
             • image: erlmcp:v1 → erlmcp:v2\n  \
             • then the post-deploy guard watches it\n\
             Policy: rules[2] applies; needs 1 approval from change-board (never the requester)\n\
             ✓ CI green for v2"
        );
    }
}
