use serde::{Deserialize, Serialize};

/// .what = what apply will do to one resource, named as the TypeScript declastruct names it
/// .why = users of that tool read plans in these words, and CI scripts match on them
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Action {
    /// the live resource already matches the wish
    Keep,
    /// the resource does not exist and will be created
    Create,
    /// the resource exists and will be changed in place
    Update,
    /// the resource exists and will be removed
    Destroy,
    /// the resource will be removed and created again
    Replace,
    /// the resource is left alone on purpose
    Omit,
}

impl Action {
    /// .what = whether applying this action changes anything
    /// .why = drives "no changes", `--detailed-exitcode` and the apply summary
    pub fn is_change(self) -> bool {
        !matches!(self, Action::Keep | Action::Omit)
    }

    /// .what = the action's name as printed in plans
    /// .why = one spelling for human output, JSON and summaries
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "KEEP",
            Action::Create => "CREATE",
            Action::Update => "UPDATE",
            Action::Destroy => "DESTROY",
            Action::Replace => "REPLACE",
            Action::Omit => "OMIT",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}
