// SummaryWomble on Azure: what `azd up` provisions. One resource group holding a Flex
// Consumption Function App (Linux, custom handler) that runs as a user-assigned managed
// identity, its storage account, Key Vault with the Reddit secrets, and Application Insights.
// The resources are in resources.bicep; this file names the group and passes the parameters.
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

@description('Create the job queue hot-topics-jobs, for queue dispatch (JOB_DISPATCH=queue).')
param queueDispatch bool = false

@description('The most instances Flex Consumption may run at once.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@secure()
@description('The function key GetHotTopics sends to SummaryWomble; a new one on every deployment unless given.')
param timerFunctionKey string = newGuid()

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
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = group.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output AZURE_STORAGE_ACCOUNT_NAME string = resources.outputs.storageAccountName
output AZURE_KEY_VAULT_URL string = resources.outputs.keyVaultUrl
output SUMMARY_WOMBLE_URL string = resources.outputs.summaryWombleUrl
