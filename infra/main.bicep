// SummaryWomble on Azure: what `azd up` provisions. One resource group holding a Flex
// Consumption Function App (Linux, custom handler) that runs as a user-assigned managed
// identity, its storage account, Key Vault with the Reddit secrets, and Application Insights.
// The resources are in resources.bicep; this file names the group and passes the parameters.
// What runs around it (azure.yaml's hooks) and why each choice was made: docs/deploy.md.
//
// Not deployed by the repository's test suite: tests/infra.rs reads these files and checks
// what can be checked offline (settings, roles, names).

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('The azd environment name; names the resource group and seeds unique resource names.')
param environmentName string

@minLength(1)
@description('The Azure region of every resource; it must offer Flex Consumption.')
param location string

@secure()
@description('The Reddit app\'s client id, stored in Key Vault as reddit-client-id.')
param redditClientId string

@secure()
@description('The Reddit app\'s client secret, stored in Key Vault as reddit-client-secret.')
param redditClientSecret string

@description('The User-Agent Reddit asks for, stored in Key Vault as reddit-user-agent.')
param redditUserAgent string = 'linux:summary-womble:v0.1.0 (content collection)'

// Queue dispatch by default: Flex Consumption scales instances in and out, and drains only the
// executions under way, so a job an instance runs detached (inline dispatch) can lose its
// instance mid-way; a queued job is an execution of RunJob (docs/deploy.md).
@description('Queue dispatch (JOB_DISPATCH=queue, with the job queue hot-topics-jobs and its poison queue); false for inline dispatch.')
param queueDispatch bool = true

// One instance per function group: every instance shares the one Reddit client id's rate
// limit, so a second buys no throughput, only cost. Flex applies the ceiling to each group
// (the HTTP functions, RunJob, GetHotTopics), not to the app (docs/deploy.md).
@description('The most instances Flex Consumption may run at once for each function group.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 1

// Generated once by the preprovision hook (infra/hooks/preprovision.sh) and kept in the azd
// environment as SUMMARY_WOMBLE_KEY (main.parameters.json), so re-provisioning keeps it.
@secure()
@minLength(32)
@description('The function key GetHotTopics sends to SummaryWomble, kept in Key Vault as summary-womble-key; set on the app after each deployment by infra/hooks/postdeploy.sh.')
param timerFunctionKey string

// Generated once by the same hook and kept as CALLBACK_SIGNING_KEY: whsec_ and the base64 of
// 32 random bytes, the Standard Webhooks secret that signs completion callbacks.
@secure()
@minLength(38)
@description('The whsec_ secret that signs completion callbacks, kept in Key Vault as callback-signing-key.')
param callbackSigningKey string

var tags = {
  'azd-env-name': environmentName
}
// Short and stable for this environment, subscription and region: storage account and Key Vault
// names are global and have length limits.
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))

resource group 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'summary-womble'
  scope: group
  params: {
    location: location
    tags: tags
    resourceToken: resourceToken
    redditClientId: redditClientId
    redditClientSecret: redditClientSecret
    redditUserAgent: redditUserAgent
    queueDispatch: queueDispatch
    maximumInstanceCount: maximumInstanceCount
    timerFunctionKey: timerFunctionKey
    callbackSigningKey: callbackSigningKey
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output AZURE_STORAGE_ACCOUNT_NAME string = resources.outputs.storageAccountName
output AZURE_KEY_VAULT_URL string = resources.outputs.keyVaultUrl
output SUMMARY_WOMBLE_URL string = resources.outputs.summaryWombleUrl
