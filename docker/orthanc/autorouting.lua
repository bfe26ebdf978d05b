-- Forward what a modality sent (dermoscopy DMS, legacy VL photographic XC) to dermnode, never dermnode's
-- own outputs (SEG, SR): a loop otherwise. The original stays in Orthanc.
function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = tags['Modality']
  if (modality == 'DMS' or modality == 'XC') and origin['RemoteAet'] ~= 'DERMNODE' then
    SendToModality(instanceId, 'dermnode')
  end
end
