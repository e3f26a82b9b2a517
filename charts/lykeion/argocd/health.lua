-- Argo CD health of the four Lykeion kinds (ModelFamily, FeatureManifest, Model,
-- Deployment): read `status.observedGeneration` and the `Ready` condition, nothing else.
-- A False Ready whose reason names work in progress is Progressing; any other is Degraded.
local progressing = {
  Pending = true, Reconciling = true, Backfilling = true, Training = true,
  TrainingRequested = true, TrainingRunning = true, VersionsStarting = true,
  RolloutHeld = true, NoVersionServing = true, FeaturesNotMaterialized = true,
}
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "waiting for the Lykeion operator"
  return hs
end
if obj.status.observedGeneration == nil or obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "the operator has not observed generation " .. obj.metadata.generation .. " yet"
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    hs.message = condition.message
    if condition.status == "True" then
      hs.status = "Healthy"
    elseif progressing[condition.reason] or string.find(condition.reason or "", "^Waiting") then
      hs.status = "Progressing"
    else
      hs.status = "Degraded"
    end
    return hs
  end
end
hs.status = "Progressing"
hs.message = "no Ready condition yet"
return hs
