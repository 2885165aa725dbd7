// The resources of SummaryWomble in one resource group (see main.bicep).
//
// Identity-based throughout: the storage account allows no shared keys, the app reads storage
// and Key Vault as its user-assigned identity, and Application Insights takes telemetry only
// with Entra ID. The app settings are those the handler reads in Azure (README, "Settings");
// tests/infra.rs checks them against the handler's list.

@description('The region of every resource.')
param location string

param tags object

@description('Seeds the globally unique names.')
param resourceToken string

@secure()
param redditClientId string

@secure()
param redditClientSecret string

param redditUserAgent string

@description('Queue dispatch (true) or inline dispatch (false); see main.bicep.')
param queueDispatch bool

@description('The most instances for each function group; see main.bicep.')
param maximumInstanceCount int

@description('The function key GetHotTopics sends; generated once, see main.bicep.')
@secure()
param timerFunctionKey string

@description('The whsec_ secret that signs completion callbacks; generated once, see main.bicep.')
@secure()
param callbackSigningKey string

// Names fixed by the contract (api.md): the container, the job queue, the Key Vault secrets.
var containerName = 'hot-topics'
var jobQueueName = 'hot-topics-jobs'
var clientIdSecretName = 'reddit-client-id'
var clientSecretSecretName = 'reddit-client-secret'
var userAgentSecretName = 'reddit-user-agent'
// The function key GetHotTopics sends (SUMMARY_WOMBLE_KEY), kept in Key Vault. The host key
// with this value is set after deployment by infra/hooks/postdeploy.sh, not here: a
// Microsoft.Web/sites/host/functionKeys resource asks the host runtime during provisioning,
// before any code runs, and fails now and then (docs/deploy.md).
var timerKeySecretName = 'summary-womble-key'
// The Standard Webhooks secret that signs completion callbacks (CALLBACK_SIGNING_KEY).
var callbackKeySecretName = 'callback-signing-key'
// Flex Consumption takes the deployment package from a blob container of its own.
var deploymentContainerName = 'app-package-${resourceToken}'

// Built-in role definitions.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// The one identity of the app: storage (the host's and the handler's), Key Vault references,
// the deployment package, telemetry.
resource appIdentity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-${resourceToken}'
  location: location
  tags: tags
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: 'st${resourceToken}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowBlobPublicAccess: false
    // Identity only: there is no account key for anyone to leak.
    allowSharedKeyAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
  }

  resource blobService 'blobServices' = {
    name: 'default'

    resource hotTopics 'containers' = {
      name: containerName
    }

    resource deploymentPackages 'containers' = {
      name: deploymentContainerName
    }
  }

  resource queueService 'queueServices' = {
    name: 'default'

    resource jobQueue 'queues' = if (queueDispatch) {
      name: jobQueueName
    }

    // Where the host moves a message whose last delivery failed.
    resource poisonQueue 'queues' = if (queueDispatch) {
      name: '${jobQueueName}-poison'
    }
  }
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: 'kv-${resourceToken}'
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }

  resource clientIdSecret 'secrets' = {
    name: clientIdSecretName
    properties: {
      value: redditClientId
    }
  }

  resource clientSecretSecret 'secrets' = {
    name: clientSecretSecretName
    properties: {
      value: redditClientSecret
    }
  }

  resource userAgentSecret 'secrets' = {
    name: userAgentSecretName
    properties: {
      value: redditUserAgent
    }
  }

  resource timerKeySecret 'secrets' = {
    name: timerKeySecretName
    properties: {
      value: timerFunctionKey
    }
  }

  resource callbackKeySecret 'secrets' = {
    name: callbackKeySecretName
    properties: {
      value: callbackSigningKey
    }
  }
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${resourceToken}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${resourceToken}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    // Telemetry only with Entra ID: APPLICATIONINSIGHTS_AUTHENTICATION_STRING names the identity.
    DisableLocalAuth: true
  }
}

// What the code and the host need, given to the app's identity. For host storage
// (AzureWebJobsStorage) Microsoft states Storage Blob Data Owner as the minimum, plus Storage
// Table Data Contributor for the host's diagnostic events (docs/deploy.md).
// Blobs: the job documents and topic blobs (the handler); leases, keys and the deployment
// package (the host and Flex Consumption).
resource blobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageBlobDataOwner)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Queues: the job queue of queue dispatch, and the host's own queues.
resource queueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Tables: the host's diagnostic events, written even when the app cannot start.
resource tableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appIdentity.id, roles.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageTableDataContributor)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Secrets: Key Vault references in the app settings (and KEY_VAULT_URL, if used instead).
resource vaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appIdentity.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Telemetry: Application Insights with local authentication off.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(insights.id, appIdentity.id, roles.monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appIdentity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${resourceToken}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    // Linux.
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: 'func-${resourceToken}'
  location: location
  // azd finds the app to deploy the `handler` service of azure.yaml to by this tag.
  tags: union(tags, {
    'azd-service-name': 'handler'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${appIdentity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Key Vault references are resolved as this identity (there is no system-assigned one).
    keyVaultReferenceIdentity: appIdentity.id
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: appIdentity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: 2048
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      appSettings: [
        // Storage, identity-based, for the host and the handler alike. The service URIs
        // name the blob and queue endpoints as Microsoft's Flex Consumption samples do (the
        // queue is where RunJob's trigger and the scale controller look); the account name
        // gives the host the table endpoint of its diagnostic events.
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storage.name
        }
        {
          name: 'AzureWebJobsStorage__blobServiceUri'
          value: storage.properties.primaryEndpoints.blob
        }
        {
          name: 'AzureWebJobsStorage__queueServiceUri'
          value: storage.properties.primaryEndpoints.queue
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: appIdentity.properties.clientId
        }
        // Telemetry (read by the host).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: insights.properties.ConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${appIdentity.properties.clientId};Authorization=AAD'
        }
        // Reddit credentials: read by the handler itself from the vault (secrets
        // reddit-client-id, reddit-client-secret, reddit-user-agent) with the app's identity,
        // again every hour and at once when Reddit refuses them, so a rotated secret needs no
        // restart (docs/reddit.md). Key Vault references would be fixed for the life of the
        // process.
        {
          name: 'KEY_VAULT_URL'
          value: vault.properties.vaultUri
        }
        {
          name: 'AZURE_CLIENT_ID'
          value: appIdentity.properties.clientId
        }
        // Completion callbacks are signed (Standard Webhooks); under the host in Azure a
        // callback_url is refused without this key.
        {
          name: 'CALLBACK_SIGNING_KEY'
          value: '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${callbackKeySecretName})'
        }
        // Job dispatch: RunJob's trigger reads its queue name from JOB_QUEUE (%JOB_QUEUE%).
        {
          name: 'JOB_DISPATCH'
          value: queueDispatch ? 'queue' : 'inline'
        }
        {
          name: 'JOB_QUEUE'
          value: jobQueueName
        }
        // GetHotTopics' key for SummaryWomble: the host key summary-womble-timer that
        // infra/hooks/postdeploy.sh sets to the same value.
        {
          name: 'SUMMARY_WOMBLE_KEY'
          value: '@Microsoft.KeyVault(SecretUri=${vault.properties.vaultUri}secrets/${timerKeySecretName})'
        }
      ]
    }
  }
  dependsOn: [
    // The app starts reading storage and resolving references at once.
    blobDataOwner
    queueDataContributor
    tableDataContributor
    vaultSecretsUser
    metricsPublisher
    storage::blobService::deploymentPackages
    vault::clientIdSecret
    vault::clientSecretSecret
    vault::userAgentSecret
    vault::timerKeySecret
    vault::callbackKeySecret
  ]
}

output functionAppName string = app.name
output storageAccountName string = storage.name
output keyVaultUrl string = vault.properties.vaultUri
output summaryWombleUrl string = 'https://${app.properties.defaultHostName}/api/SummaryWomble'
